#include <doctest/doctest.h>

#include <string>

#include "stickyd/query.hpp"

using namespace stickyd;

namespace {
std::optional<std::string> s(const char* v) { return std::optional<std::string>(v); }
}  // namespace

TEST_SUITE("query") {
  TEST_CASE("split_target") {
    auto t = split_target("/socket.io/?EIO=4&transport=polling&t=PXk2");
    CHECK(t.path == "/socket.io/");
    CHECK(t.query == "EIO=4&transport=polling&t=PXk2");
    t = split_target("/socket.io/");
    CHECK(t.path == "/socket.io/");
    CHECK(t.query.empty());
    t = split_target("/a?");
    CHECK(t.path == "/a");
    CHECK(t.query.empty());
    t = split_target("/a?b?c");
    CHECK(t.path == "/a");
    CHECK(t.query == "b?c");
    t = split_target("/a?sid=x#frag");
    CHECK(t.path == "/a");
    CHECK(t.query == "sid=x");
    t = split_target("/a#frag?sid=x");
    CHECK(t.path == "/a");
    CHECK(t.query.empty());
    t = split_target("");
    CHECK(t.path.empty());
    CHECK(t.query.empty());
    t = split_target("?x=1");
    CHECK(t.path.empty());
    CHECK(t.query == "x=1");
  }

  TEST_CASE("percent_decode (querystring.unescapeBuffer)") {
    CHECK(percent_decode("", true) == "");
    CHECK(percent_decode("abc", true) == "abc");
    CHECK(percent_decode("%41%42", false) == "AB");
    CHECK(percent_decode("%2f%2F", false) == "//");
    CHECK(percent_decode("a+b", true) == "a b");
    CHECK(percent_decode("a+b", false) == "a+b");
    CHECK(percent_decode("%2B", true) == "+");
    // node: querystring.unescapeBuffer("%41%4%zz%%41+%", true) -> "A%4%zz%A %"
    CHECK(percent_decode("%41%4%zz%%41+%", true) == "A%4%zz%A %");
    CHECK(percent_decode("%", true) == "%");
    CHECK(percent_decode("%4", true) == "%4");
    CHECK(percent_decode("%g1", true) == "%g1");
    CHECK(percent_decode("%1g", true) == "%1g");
    CHECK(percent_decode("%00", true) == std::string("\0", 1));
    CHECK(percent_decode("%C3%A9", true) == "\xC3\xA9");
    CHECK(percent_decode("%FF", true) == "\xFF");  // bytes, no UTF-8 validation
  }

  TEST_CASE("query_param: sid extraction") {
    const char* q = "EIO=4&transport=polling&t=PXk2&sid=5_S2AZdCI1bklnExAAAk";
    CHECK(query_param(q, "sid") == s("5_S2AZdCI1bklnExAAAk"));
    CHECK(query_param(q, "EIO") == s("4"));
    CHECK(query_param(q, "transport") == s("polling"));
    CHECK_FALSE(query_param(q, "b64").has_value());
    CHECK_FALSE(query_param(q, "si").has_value());
    CHECK_FALSE(query_param(q, "sidx").has_value());
    CHECK_FALSE(query_param("", "sid").has_value());
  }

  TEST_CASE("query_param: encodings, '+', repeated keys, empty values") {
    CHECK(query_param("sid=a%2Fb", "sid") == s("a/b"));
    CHECK(query_param("sid=a+b", "sid") == s("a b"));
    CHECK(query_param("sid=a%zz", "sid") == s("a%zz"));
    CHECK(query_param("s%69d=abc", "sid") == s("abc"));
    CHECK(query_param("s%69%64=abc", "sid") == s("abc"));
    // Repeated keys: the last wins, as in engine.io's Object.fromEntries(searchParams).
    CHECK(query_param("s%69d=first&sid=second", "sid") == s("second"));
    CHECK(query_param("sid=1&sid=2", "sid") == s("2"));
    CHECK(query_param("sid=1&sid=", "sid") == s(""));
    CHECK(query_param("a+b=c", "a b") == s("c"));
    CHECK(query_param("a%20b=c", "a b") == s("c"));
    CHECK(query_param("sid=", "sid") == s(""));
    CHECK(query_param("sid", "sid") == s(""));
    CHECK(query_param("b64&sid=x", "b64") == s(""));
    CHECK(query_param("x=1&&sid=y&", "sid") == s("y"));
    CHECK(query_param("&&&", "sid") == std::nullopt);
    CHECK(query_param("=v", "") == s("v"));
    CHECK(query_param("sid=a=b", "sid") == s("a=b"));
    CHECK(query_param("SID=x", "sid") == std::nullopt);
    CHECK(query_param("sid%3Dx=1", "sid") == std::nullopt);
    CHECK(query_param("sid%3Dx=1", "sid=x") == s("1"));
  }

  TEST_CASE("query_param: long inputs stay linear") {
    std::string q;
    for (int i = 0; i < 100000; ++i) q += "k%41=v&";
    q += "sid=found";
    CHECK(query_param(q, "sid") == s("found"));
    CHECK(query_param(q, "kA") == s("v"));
    std::string amps(1000000, '&');
    CHECK_FALSE(query_param(amps, "sid").has_value());
  }

  TEST_CASE("is_engineio_path") {
    CHECK(is_engineio_path("/socket.io/", "/socket.io/"));
    CHECK(is_engineio_path("/socket.io/abc", "/socket.io/"));
    CHECK_FALSE(is_engineio_path("/socket.io", "/socket.io/"));
    CHECK_FALSE(is_engineio_path("/socket.iox/", "/socket.io/"));
    CHECK_FALSE(is_engineio_path("/", "/socket.io/"));
    CHECK_FALSE(is_engineio_path("", "/socket.io/"));
    CHECK(is_engineio_path("/anything", "/"));
  }
}

TEST_CASE("query_param_raw: a view of the last value, still encoded") {
  std::string_view q = "EIO=4&sid=a%2Bb&transport=polling&sid=XYZ_-123";
  auto v = query_param_raw(q, "sid");
  REQUIRE(v.has_value());
  CHECK(*v == "XYZ_-123");
  CHECK(v->data() >= q.data());
  CHECK(v->data() + v->size() <= q.data() + q.size());  // points into the query: no copy
  CHECK(!query_needs_decoding(*v));
  auto e = query_param_raw("sid=a%2Bb", "sid");
  REQUIRE(e.has_value());
  CHECK(*e == "a%2Bb");
  CHECK(query_needs_decoding(*e));
  CHECK(query_param("sid=a%2Bb", "sid") == std::optional<std::string>("a+b"));
  CHECK(!query_param_raw("EIO=4", "sid").has_value());
  CHECK(query_param_raw("sid", "sid") == std::optional<std::string_view>(""));
}
