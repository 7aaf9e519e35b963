#include <doctest/doctest.h>

#include <string_view>

#include "stickyd/http_head.hpp"

TEST_CASE("http head: a released head's buffers serve the next head, which starts empty") {
  stickyd::HttpHead a;
  auto fill = [](stickyd::HttpHead& h, std::string_view url, std::string_view name,
                 std::string_view value) {
    h.add_start(url.data(), url.size());
    h.add_name(name.data(), name.size());
    h.add_value(value.data(), value.size());
  };
  fill(a, "/socket.io/?EIO=4&sid=first", "Cookie", "io=first");
  const char* first_buffer = a.start().data();
  a.release();
  CHECK(a.size() == 0);
  CHECK(a.count() == 0);
  stickyd::HttpHead b;  // another connection on the same thread takes the pooled buffers
  fill(b, "/x", "Host", "h");
  CHECK(b.start() == "/x");
  REQUIRE(b.count() == 1);
  CHECK(b.name(0) == "Host");
  CHECK(b.value(0) == "h");
  CHECK(b.start().data() == first_buffer);
  CHECK(b.get("cookie").empty());
}
