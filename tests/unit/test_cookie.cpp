#include <doctest/doctest.h>

#include <random>
#include <string>

#include "stickyd/cookie.hpp"

using namespace stickyd;

namespace {

const char* const kSid = "5_S2AZdCI1bklnExAAAk";

// A CookieConfig with every attribute off, so one can be switched on at a time.
CookieConfig bare() {
  CookieConfig c;
  c.inject = true;
  c.path.reset();
  c.http_only = false;
  c.same_site = SameSite::Unset;
  return c;
}

std::optional<std::string> fc(std::string_view header, std::string_view name = "io") {
  return find_cookie(header, name);
}

}  // namespace

TEST_SUITE("cookie") {
  // Expected values below were produced by the `cookie` npm package 0.7.2 (parse/serialize).

  TEST_CASE("find_cookie: basic pairs, spaces, repeated names") {
    CHECK(fc("io=abc") == std::optional<std::string>("abc"));
    CHECK(fc("a=1; io=xyz") == std::optional<std::string>("xyz"));
    CHECK(fc("a=1;io=xyz;b=2") == std::optional<std::string>("xyz"));
    CHECK(fc("  io  =  v  ; b=2") == std::optional<std::string>("v"));
    CHECK(fc("io=\t v \t") == std::optional<std::string>("v"));
    CHECK(fc("io=1; io=2") == std::optional<std::string>("1"));
    CHECK(fc("io=a=b") == std::optional<std::string>("a=b"));
    CHECK(fc("io=") == std::optional<std::string>(""));
    CHECK(fc("io=;x=1") == std::optional<std::string>(""));
    CHECK(fc("a=1; b=2", "b") == std::optional<std::string>("2"));
    CHECK(fc("=v", "") == std::optional<std::string>("v"));
    // Names are compared exactly (case-sensitive, no decoding).
    CHECK_FALSE(fc("IO=abc").has_value());
    CHECK_FALSE(fc("i%6F=abc").has_value());
    CHECK_FALSE(fc("io2=abc").has_value());
    CHECK_FALSE(fc("xio=abc").has_value());
  }

  TEST_CASE("find_cookie: pairs without '=' are skipped") {
    CHECK_FALSE(fc("io").has_value());
    CHECK(fc("x; io=1") == std::optional<std::string>("1"));
    CHECK(fc("a;b;io=q") == std::optional<std::string>("q"));
    CHECK(fc("io;io=r") == std::optional<std::string>("r"));
    CHECK_FALSE(fc(";;;").has_value());
    CHECK_FALSE(fc("").has_value());
    CHECK_FALSE(fc("i").has_value());
  }

  TEST_CASE("find_cookie: quotes") {
    CHECK(fc("io=\"quoted\"") == std::optional<std::string>("quoted"));
    CHECK(fc("io=\"\"") == std::optional<std::string>(""));
    CHECK(fc("io=\"") == std::optional<std::string>(""));
    CHECK(fc("io=\"abc") == std::optional<std::string>("\"abc"));
    CHECK(fc("io= \"a b\" ") == std::optional<std::string>("a b"));
  }

  TEST_CASE("find_cookie: percent decoding like decodeURIComponent") {
    CHECK(fc("io=%7Ex") == std::optional<std::string>("~x"));
    CHECK(fc("io=%2f%2F") == std::optional<std::string>("//"));
    CHECK(fc("io=a+b") == std::optional<std::string>("a+b"));
    CHECK(fc("io=%E2%82%AC") == std::optional<std::string>("\xE2\x82\xAC"));
    CHECK(fc("io=%F0%9F%98%80") == std::optional<std::string>("\xF0\x9F\x98\x80"));
    CHECK(fc("io=\"%41\"") == std::optional<std::string>("A"));
    // Invalid escapes: the whole value is kept as sent.
    CHECK(fc("io=%zz") == std::optional<std::string>("%zz"));
    CHECK(fc("io=%41%") == std::optional<std::string>("%41%"));
    CHECK(fc("io=%4") == std::optional<std::string>("%4"));
    CHECK(fc("io=%C3") == std::optional<std::string>("%C3"));             // truncated UTF-8
    CHECK(fc("io=%C3x") == std::optional<std::string>("%C3x"));
    CHECK(fc("io=%C0%80") == std::optional<std::string>("%C0%80"));       // overlong
    CHECK(fc("io=%ED%A0%80") == std::optional<std::string>("%ED%A0%80"));  // surrogate
    CHECK(fc("io=%F4%90%80%80") == std::optional<std::string>("%F4%90%80%80"));  // > U+10FFFF
    CHECK(fc("io=%80") == std::optional<std::string>("%80"));  // lone continuation byte
    CHECK(fc("io=%FF") == std::optional<std::string>("%FF"));
  }

  TEST_CASE("find_cookie: garbage bytes never crash") {
    const std::string nasty[] = {
        std::string("io=\0abc", 7), "\xff\xfe=\x80", "io=\"\xc3", std::string(1, '\0'),
        "%", "=", ";=;", "io=%", "io=%%", "io=%%41", std::string(5000, ';') + "io=x",
        std::string(5000, '=') + ";io=y"};
    for (const auto& h : nasty) {
      (void)find_cookie(h, "io");
      (void)find_cookie(h, "");
    }
    CHECK(fc(std::string(5000, ';') + "io=x") == std::optional<std::string>("x"));
    CHECK(fc(std::string("io=\0abc", 7)) == std::optional<std::string>(std::string("\0abc", 4)));

    std::mt19937 rng(12345);
    const char alphabet[] = {'i', 'o', '=', ';', ' ', '\t', '"', '%', '4', '1', 'C', '3',
                             'F', '\0', '\x80', '\xff', 'x'};
    for (int n = 0; n < 20000; ++n) {
      std::string h;
      const size_t len = rng() % 24;
      for (size_t i = 0; i < len; ++i) h.push_back(alphabet[rng() % sizeof alphabet]);
      auto v = find_cookie(h, "io");
      if (v) CHECK(v->size() <= h.size());
      (void)parse_set_cookie_pair(h);
    }
  }

  TEST_CASE("parse_set_cookie_pair") {
    auto p = parse_set_cookie_pair("io=abc; Path=/; HttpOnly");
    REQUIRE(p);
    CHECK(p->name == "io");
    CHECK(p->value == "abc");
    p = parse_set_cookie_pair(" io = abc ");
    REQUIRE(p);
    CHECK(p->name == "io");
    CHECK(p->value == "abc");
    p = parse_set_cookie_pair("io=");
    REQUIRE(p);
    CHECK(p->value.empty());
    p = parse_set_cookie_pair("io=a=b;x=y");
    REQUIRE(p);
    CHECK(p->value == "a=b");
    CHECK_FALSE(parse_set_cookie_pair("io").has_value());
    CHECK_FALSE(parse_set_cookie_pair("io; Path=/a=b").has_value());
    CHECK_FALSE(parse_set_cookie_pair("=abc").has_value());
    CHECK_FALSE(parse_set_cookie_pair(" =abc").has_value());
    CHECK_FALSE(parse_set_cookie_pair("").has_value());
  }

  TEST_CASE("is_cookie_octets") {
    CHECK(is_cookie_octets(""));
    CHECK(is_cookie_octets(kSid));
    CHECK(is_cookie_octets("!#$%&'()*+-./:<=>?@[]^_`{|}~"));
    for (int c = 0; c < 256; ++c) {
      const bool expected = c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
                            (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
      const std::string s(1, static_cast<char>(c));
      INFO(c);
      CHECK(is_cookie_octets(s) == expected);
    }
    CHECK_FALSE(is_cookie_octets("a b"));
    CHECK_FALSE(is_cookie_octets("a\"b"));
    CHECK_FALSE(is_cookie_octets("a,b"));
    CHECK_FALSE(is_cookie_octets("a;b"));
    CHECK_FALSE(is_cookie_octets("a\\b"));
  }

  TEST_CASE("encode_uri_component matches JS") {
    CHECK(encode_uri_component("") == "");
    CHECK(encode_uri_component(kSid) == kSid);
    CHECK(encode_uri_component("A-Z_.!~*'()") == "A-Z_.!~*'()");
    CHECK(encode_uri_component("a b/\xC3\xA9+=;,\"\\") == "a%20b%2F%C3%A9%2B%3D%3B%2C%22%5C");
    CHECK(encode_uri_component("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") ==
          "%C3%A9%E2%82%AC%F0%9F%98%80");
    std::string all;
    for (int c = 1; c <= 127; ++c) all.push_back(static_cast<char>(c));
    // node -e 'encodeURIComponent(String.fromCharCode(1..127))'
    CHECK(encode_uri_component(all) ==
          "%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14%15%16%17%18%19%1A%1B%1C"
          "%1D%1E%1F%20!%22%23%24%25%26'()*%2B%2C-.%2F0123456789%3A%3B%3C%3D%3E%3F%40ABCDEFGHIJ"
          "KLMNOPQRSTUVWXYZ%5B%5C%5D%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~%7F");
    CHECK(encode_uri_component(std::string("\0", 1)) == "%00");
  }

  TEST_CASE("serialize_set_cookie: cookie: true is Socket.IO's real output") {
    CookieConfig c;  // defaults = `cookie: true`
    c.inject = true;
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>("io=5_S2AZdCI1bklnExAAAk; Path=/; HttpOnly; SameSite=Lax"));
    CHECK(serialize_set_cookie(c, "On0wSrAZ8mSudis7AAAl") ==
          std::optional<std::string>("io=On0wSrAZ8mSudis7AAAl; Path=/; HttpOnly; SameSite=Lax"));
  }

  TEST_CASE("serialize_set_cookie: each attribute alone") {
    const std::string base = std::string("io=") + kSid;
    CookieConfig c = bare();
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base));

    c = bare();
    c.max_age = 3600;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; Max-Age=3600"));
    c.max_age = -5;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; Max-Age=-5"));
    c.max_age = 0;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; Max-Age=0"));

    c = bare();
    c.domain = "example.com";
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>(base + "; Domain=example.com"));

    c = bare();
    c.path = "/app";
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; Path=/app"));

    c = bare();
    c.expires = 1792567680;
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>(base + "; Expires=Wed, 21 Oct 2026 07:28:00 GMT"));
    c.expires = 0;  // a Date is truthy even at the epoch
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>(base + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"));

    c = bare();
    c.http_only = true;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; HttpOnly"));

    c = bare();
    c.secure = true;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; Secure"));

    c = bare();
    c.partitioned = true;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; Partitioned"));

    for (const char* prio : {"Low", "Medium", "High"}) {
      c = bare();
      c.priority = prio;
      CHECK(serialize_set_cookie(c, kSid) ==
            std::optional<std::string>(base + "; Priority=" + prio));
    }

    c = bare();
    c.same_site = SameSite::Strict;
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>(base + "; SameSite=Strict"));
    c.same_site = SameSite::Lax;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; SameSite=Lax"));
    c.same_site = SameSite::None;
    CHECK(serialize_set_cookie(c, kSid) == std::optional<std::string>(base + "; SameSite=None"));
  }

  TEST_CASE("serialize_set_cookie: all attributes together, in the package's order") {
    CookieConfig c;
    c.inject = true;
    c.max_age = 86400;
    c.domain = ".example.com";
    c.path = "/socket.io/";
    c.expires = 1792567680;
    c.http_only = true;
    c.secure = true;
    c.partitioned = true;
    c.priority = "High";
    c.same_site = SameSite::None;
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>(
              "io=5_S2AZdCI1bklnExAAAk; Max-Age=86400; Domain=.example.com; Path=/socket.io/; "
              "Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure; Partitioned; "
              "Priority=High; SameSite=None"));
  }

  TEST_CASE("serialize_set_cookie: path false (engine.io then defaults httpOnly off)") {
    CookieConfig c;
    c.inject = true;
    c.path.reset();
    c.http_only = false;
    CHECK(serialize_set_cookie(c, kSid) ==
          std::optional<std::string>("io=5_S2AZdCI1bklnExAAAk; SameSite=Lax"));
  }

  TEST_CASE("serialize_set_cookie: encoding and unsafe values") {
    CookieConfig c = bare();
    c.name = "SERVERID";
    CHECK(serialize_set_cookie(c, "a b/\xC3\xA9") ==
          std::optional<std::string>("SERVERID=a%20b%2F%C3%A9"));
    CHECK(serialize_set_cookie(c, "x;\r\nSet-Cookie: evil=1") ==
          std::optional<std::string>("SERVERID=x%3B%0D%0ASet-Cookie%3A%20evil%3D1"));
    c.encode = CookieEncode::None;
    CHECK(serialize_set_cookie(c, "abc") == std::optional<std::string>("SERVERID=abc"));
    CHECK(serialize_set_cookie(c, "a%20b") == std::optional<std::string>("SERVERID=a%20b"));
    CHECK_FALSE(serialize_set_cookie(c, "a b").has_value());
    CHECK_FALSE(serialize_set_cookie(c, "a;b").has_value());
    CHECK_FALSE(serialize_set_cookie(c, "x\r\nSet-Cookie: evil=1").has_value());
    CHECK_FALSE(serialize_set_cookie(c, "\xC3\xA9").has_value());
    c.name = "bad name";
    CHECK_FALSE(serialize_set_cookie(c, "abc").has_value());
  }

  TEST_CASE("http_date is Date#toUTCString") {
    CHECK(http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK(http_date(1792567680) == "Wed, 21 Oct 2026 07:28:00 GMT");
    CHECK(http_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT");
    CHECK(http_date(253402300799) == "Fri, 31 Dec 9999 23:59:59 GMT");
    CHECK(http_date(-1) == "Wed, 31 Dec 1969 23:59:59 GMT");
  }
}
