#include <doctest/doctest.h>

#include "stickyd/persistence.hpp"
#include "stickyd/rewrite.hpp"

using namespace stickyd;

namespace {
Config cfg_with(std::initializer_list<const char*> names) {
  Config c;
  for (const char* n : names) {
    BackendConfig b;
    b.name = n;
    b.cookie = n;
    c.backends.push_back(b);
  }
  return c;
}
}  // namespace

TEST_CASE("persistence: HAProxy date encoding matches what HAProxy 2.6 wrote") {
  // Captured from haproxy 2.6 (`cookie SERVERID insert maxidle 1h maxlife 8h`) at unix time
  // 1795816302: "SERVERID=s1|awn7c|awn7c".
  CHECK(Persistence::encode_date(1795816302) == "awn7c");
  auto d = Persistence::decode_date("awn7c");
  REQUIRE(d);
  CHECK(*d <= 1795816305);
  CHECK(*d >= 1795816300);
  CHECK_FALSE(Persistence::decode_date("aw!7c"));
  CHECK_FALSE(Persistence::decode_date("awn7"));
}

TEST_CASE("persistence: insert cookie, maxidle and maxlife") {
  Config c = cfg_with({"s1", "s2"});
  c.sticky.server_cookie.enabled = true;
  c.sticky.server_cookie.httponly = true;
  c.sticky.server_cookie.secure = true;
  c.sticky.server_cookie.domains = {".example.com"};
  Persistence p(c);
  CHECK(p.insert_set_cookie(1, 0, 0) == "SERVERID=s2; path=/; domain=.example.com; HttpOnly; Secure");
  c.sticky.server_cookie.maxidle = Millis(3600 * 1000);
  c.sticky.server_cookie.maxlife = Millis(8 * 3600 * 1000);
  Persistence q(c);
  CHECK(q.insert_set_cookie(0, 1795816302, 0) ==
        "SERVERID=s1|awn7c|awn7c; path=/; domain=.example.com; HttpOnly; Secure");
  auto fresh = q.parse_server_cookie("s1|awn7c|awn7c", 1795816302 + 60);
  CHECK(fresh.backend == 0);
  CHECK_FALSE(fresh.expired);
  CHECK(q.parse_server_cookie("s1|awn7c|awn7c", 1795816302 + 3 * 3600).expired);  // idle
  CHECK(q.parse_server_cookie("s1|awn7c|awn7c", 1795816302 - 100).backend == 0);
  auto nodates = q.parse_server_cookie("s2", 1795816302);
  CHECK(nodates.backend == 1);
  CHECK(q.needs_refresh(nodates, 1795816302));
  CHECK(q.parse_server_cookie("zz", 0).backend == -1);
}

TEST_CASE("persistence: tags") {
  Config c = cfg_with({"a1", "b2"});
  c.sticky.tag.enabled = true;
  Persistence p(c);
  CHECK(p.tag(1, "XYZ") == "b2.XYZ");
  auto t = p.parse_tag("b2.XYZ");
  REQUIRE(t);
  CHECK(t->backend == 1);
  CHECK(t->untagged == "XYZ");
  CHECK_FALSE(p.parse_tag("c3.XYZ"));
  CHECK_FALSE(p.parse_tag("b2."));
  CHECK_FALSE(p.parse_tag(".b2"));
  CHECK_FALSE(p.parse_tag("plain"));
}

TEST_CASE("rewrite: sid in the query keeps every other byte") {
  CHECK(replace_query_param("/socket.io/?EIO=4&transport=polling&sid=n1.abc&t=x", "sid", "abc") ==
        "/socket.io/?EIO=4&transport=polling&sid=abc&t=x");
  CHECK(replace_query_param("/s/?sid=a&sid=b", "sid", "z") == "/s/?sid=z&sid=z");
  CHECK(replace_query_param("/s/?s%69d=a", "sid", "z") == "/s/?s%69d=z");
  CHECK(remove_query_param("/socket.io/?EIO=4&prev_sid=abc&transport=polling", "prev_sid") ==
        "/socket.io/?EIO=4&transport=polling");
  CHECK(remove_query_param("/s/?prev_sid=a&prev_sid=b", "prev_sid") == "/s/");
  CHECK(remove_query_param("/s/?a=1&prev%5Fsid=x#f", "prev_sid") == "/s/?a=1#f");
  CHECK(remove_query_param("/s/?a=1", "prev_sid") == "/s/?a=1");
  CHECK(remove_query_param("/s/", "prev_sid") == "/s/");
  CHECK(replace_query_param("/s/", "sid", "z") == "/s/");
  CHECK(replace_query_param("/s/?a&&b=1", "sid", "z") == "/s/?a&&b=1");
  // A fragment is not part of the query: copied through, never rewritten.
  CHECK(replace_query_param("/s/?sid=n1.abc#&sid#x", "sid", "abc") == "/s/?sid=abc#&sid#x");
}

TEST_CASE("rewrite: cookie header edits") {
  auto strip = [](std::string_view v) -> std::optional<std::string> {
    return std::string(v.substr(v.find('.') + 1));
  };
  CHECK(edit_cookie_header("a=1; io=n1.abc; b=2", "io", strip) == "a=1; io=abc; b=2");
  CHECK(edit_cookie_header("SERVERID=s1;a=1", "SERVERID",
                           [](std::string_view) { return std::nullopt; }) == "a=1");
  CHECK(edit_cookie_header("SERVERID=s1", "SERVERID",
                           [](std::string_view) { return std::nullopt; }).empty());
  CHECK(replace_set_cookie_value("io=abc; Path=/; HttpOnly", "n1.abc") == "io=n1.abc; Path=/; HttpOnly");
}

TEST_CASE("rewrite: open packet sid, EIO4, EIO3 text and binary framing") {
  std::string eio4 =
      R"(0{"sid":"5_S2AZdCI1bklnExAAAk","upgrades":["websocket"],"pingInterval":2000,"pingTimeout":2000,"maxPayload":1000000})";
  auto r4 = replace_open_packet_sid(eio4, "5_S2AZdCI1bklnExAAAk", "n1.5_S2AZdCI1bklnExAAAk");
  REQUIRE(r4);
  CHECK(r4->find(R"("sid":"n1.5_S2AZdCI1bklnExAAAk")") != std::string::npos);
  CHECK(r4->size() == eio4.size() + 3);
  std::string pkt = R"(0{"sid":"On0wSrAZ8mSudis7AAAl","upgrades":["websocket"],"pingInterval":2000,"pingTimeout":2000,"maxPayload":1000000})";
  std::string eio3 = std::to_string(pkt.size()) + ":" + pkt + "2:40";
  auto r3 = replace_open_packet_sid(eio3, "On0wSrAZ8mSudis7AAAl", "n2.On0wSrAZ8mSudis7AAAl");
  REQUIRE(r3);
  CHECK(r3->substr(0, 4) == "119:");
  CHECK(r3->substr(r3->size() - 4) == "2:40");
  std::string bin(1, '\0');
  for (char d : std::to_string(pkt.size())) bin += static_cast<char>(d - '0');
  bin += static_cast<char>(0xFF);
  bin += pkt;
  auto rb = replace_open_packet_sid(bin, "On0wSrAZ8mSudis7AAAl", "n2.On0wSrAZ8mSudis7AAAl");
  REQUIRE(rb);
  CHECK((*rb)[1] == 1);
  CHECK((*rb)[2] == 1);
  CHECK((*rb)[3] == 9);
  CHECK(static_cast<unsigned char>((*rb)[4]) == 0xFF);
  CHECK_FALSE(replace_open_packet_sid(eio4, "other", "x"));
  // Repeated keys: JSON.parse keeps the last, and so does the rewrite.
  auto dup = replace_open_packet_sid(R"(0{"sid":"abc","sid":"abc"})", "abc", "n2.abc");
  REQUIRE(dup);
  CHECK(*dup == R"(0{"sid":"abc","sid":"n2.abc"})");
  // A key that merely contains `"sid"` after an escaped quote is not rewritten blindly.
  CHECK_FALSE(replace_open_packet_sid(R"(0{"x"sid":"abc","sid":"zzz"})", "abc", "n2.abc"));
  CHECK_FALSE(replace_open_packet_sid("999:0{}", "a", "b"));
  CHECK_FALSE(replace_open_packet_sid("", "a", "b"));
}

TEST_CASE("rewrite: server text frames") {
  CHECK(server_text_frame("0{}") == std::string("\x81\x03" "0{}"));
  std::string big(300, 'x');
  std::string f = server_text_frame(big);
  CHECK(static_cast<unsigned char>(f[1]) == 126);
  CHECK(f.size() == 304);
}
