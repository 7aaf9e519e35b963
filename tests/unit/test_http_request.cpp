#include <doctest/doctest.h>
#include <llhttp.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stickyd/http_request.hpp"

using namespace stickyd;

namespace {

// A head as ClientConn's llhttp callbacks would collect it.
HttpHead head_of(std::string_view target, std::vector<std::pair<std::string, std::string>> fields) {
  HttpHead h;
  h.add_start(target.data(), target.size());
  for (const auto& [n, v] : fields) {
    h.add_name(n.data(), n.size());
    h.add_value(v.data(), v.size());
  }
  return h;
}

}  // namespace

TEST_CASE("valid_host: host[:port] with a name, IPv4 or IP literal; nothing that hides a second value") {
  for (std::string_view ok : {"a", "example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:80",
                              "[::1]", "[::1]:3000", "[2001:db8::1]", "my_host.local", "x-y.z",
                              "caf%C3%A9.example", "h:65535", "h:0"}) {
    CAPTURE(ok);
    CHECK(valid_host(ok));
  }
  for (std::string_view bad : {"", "a,evil.example", "a b", "a;b", "a/b", "a@b", "a:b", "a:",
                               ":80", "a:65536", "a:123456", "[::1", "[]", "[::1]x", "[::1]:",
                               "[g::1]", "a%2", "a%zz", "a\tb", "\xff", "a:80:80", "a!b",
                               "a*b", "SMUGGLED.example\r\nX: y"}) {
    CAPTURE(bad);
    CHECK_FALSE(valid_host(bad));
  }
}

TEST_CASE("check_request_head: Host, framing and version rules before anything is forwarded") {
  struct Case {
    std::vector<std::pair<std::string, std::string>> fields;
    int minor;
    int status;
    std::string_view reason_part;
  };
  const Case cases[] = {
      {{{"Host", "a"}}, 1, 0, ""},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}}, 1, 0, ""},
      {{{"Host", "a"}, {"Transfer-Encoding", "CHUNKED"}}, 1, 0, ""},
      {{{"Host", "a"}, {"Content-Length", "5"}}, 1, 0, ""},
      {{}, 0, 0, ""},  // HTTP/1.0 needs no Host
      {{}, 1, 400, "without Host"},
      {{{"Host", "a"}, {"host", "b"}}, 1, 400, "more than one Host"},
      {{{"Host", "a,evil.example"}}, 1, 400, "invalid Host"},
      {{{"Host", ""}}, 1, 400, "invalid Host"},
      {{{"Host ", "a"}}, 1, 400, "whitespace"},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}, 1, 400,
       "more than one Transfer-Encoding"},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}, 1, 400,
       "both Content-Length and Transfer-Encoding"},
      {{{"Host", "a"}, {"Content-Length", "5"}, {"Content-Length", "5"}}, 1, 400,
       "more than one Content-Length"},
      {{{"Host", "a"}, {"Transfer-Encoding", "identity, chunked"}}, 1, 501, "unsupported"},
      {{{"Host", "a"}, {"Transfer-Encoding", "gzip, chunked"}}, 1, 501, "unsupported"},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked, identity"}}, 1, 400, "exactly chunked"},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked, chunked"}}, 1, 400, "exactly chunked"},
      {{{"Host", "a"}, {"Transfer-Encoding", "xchunked"}}, 1, 400, "exactly chunked"},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked;q=1"}}, 1, 400, "exactly chunked"},
      {{{"Host", "a"}, {"Transfer-Encoding", ", chunked"}}, 1, 400, "exactly chunked"},
      {{{"Host", "a"}, {"Transfer-Encoding", "\"chunked\""}}, 1, 400, "exactly chunked"},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}}, 0, 400, "HTTP/1.0"},
  };
  for (const Case& c : cases) {
    HttpHead h = head_of("/", c.fields);
    HeadVerdict v = check_request_head(h, 1, c.minor);
    CAPTURE(c.fields.size());
    CAPTURE(c.minor);
    CAPTURE((c.fields.empty() ? std::string() : c.fields.back().first + ": " + c.fields.back().second));
    CHECK(v.status == c.status);
    if (c.status) {
      REQUIRE(v.reason != nullptr);
      CHECK(std::string_view(v.reason).find(c.reason_part) != std::string_view::npos);
    }
  }
}

TEST_CASE("allowed_upgrade keeps only the allowed tokens, in the client's order") {
  const std::vector<std::string> ws{"websocket"};
  CHECK(allowed_upgrade("websocket", ws) == "websocket");
  CHECK(allowed_upgrade("WebSocket", ws) == "WebSocket");
  CHECK(allowed_upgrade(" websocket ", ws) == "websocket");
  CHECK(allowed_upgrade("h2c", ws).empty());
  CHECK(allowed_upgrade("h2c, websocket", ws) == "websocket");
  CHECK(allowed_upgrade("websocketx", ws).empty());
  CHECK(allowed_upgrade("", ws).empty());
  CHECK(allowed_upgrade("websocket", {}).empty());
  CHECK(allowed_upgrade("foo, websocket", {"websocket", "foo"}) == "foo, websocket");
}

TEST_CASE("chunk_header writes lowercase hex without leading zeros") {
  char buf[24];
  CHECK(chunk_header(buf, 5) == "5\r\n");
  CHECK(chunk_header(buf, 0x1a2b) == "1a2b\r\n");
  CHECK(chunk_header(buf, kMaxChunkSize) == "ffffffff\r\n");
  CHECK(chunk_header(buf, UINT64_MAX) == "ffffffffffffffff\r\n");  // the buffer holds any size
}

TEST_CASE("the llhttp stickyd is linked with is strict") {
  CHECK(llhttp_is_strict());
  // What strict mode changes, as the self-test relies on it: CRLF must follow chunk data.
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &s);
  std::string_view good =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  CHECK(llhttp_execute(&p, good.data(), good.size()) == HPE_OK);
}
