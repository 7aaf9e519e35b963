#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "stickyd/config.hpp"

using namespace stickyd;
using namespace std::chrono_literals;

namespace {

const char* const kMinimal =
    "listen: 127.0.0.1:8080\n"
    "backends:\n"
    "  - {name: n1, address: 127.0.0.1:3001}\n";

ConfigResult load(const std::string& yaml) { return load_config_string(yaml, "t.yaml"); }

std::string all_errors(const ConfigResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.to_string() + "\n";
  return out;
}

// The config is rejected with exactly one error, at line:col, whose message contains `frag`.
void expect_one_error(const std::string& yaml, int line, int col, const std::string& frag) {
  const ConfigResult r = load(yaml);
  INFO("yaml:\n" << yaml << "errors:\n" << all_errors(r));
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].file == "t.yaml");
  CHECK(r.errors[0].line == line);
  CHECK(r.errors[0].column == col);
  CHECK(r.errors[0].message.find(frag) != std::string::npos);
}

// kMinimal plus `extra` appended (extra starts on line 4).
std::string with(const std::string& extra) { return std::string(kMinimal) + extra; }

std::string ip_of(const SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.storage.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, buf,
              sizeof buf);
  } else if (a.storage.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, buf,
              sizeof buf);
  }
  return buf;
}

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("minimal config gets every default") {
    const ConfigResult r = load(kMinimal);
    INFO(all_errors(r));
    REQUIRE(r.errors.empty());
    REQUIRE(r.config.has_value());
    const Config& c = *r.config;
    CHECK(c.source == "t.yaml");
    REQUIRE(c.listen.size() == 1);
    CHECK(c.listen[0].text == "127.0.0.1:8080");
    CHECK(c.listen[0].port() == 8080);
    CHECK(c.listen[0].storage.ss_family == AF_INET);
    CHECK(c.listen[0].length == sizeof(sockaddr_in));
    CHECK(ip_of(c.listen[0]) == "127.0.0.1");
    REQUIRE(c.backends.size() == 1);
    CHECK(c.backends[0].name == "n1");
    CHECK(c.backends[0].address.port() == 3001);
    CHECK(c.backends[0].weight == 1);
    CHECK(c.path == "/socket.io/");
    CHECK_FALSE(c.cookie.inject);
    CHECK(c.cookie.name == "io");
    CHECK(c.timeouts.connect == 5000ms);
    CHECK(c.timeouts.client == 60000ms);
    CHECK(c.timeouts.server == 60000ms);
    CHECK(c.timeouts.tunnel == 3600000ms);
    CHECK(c.timeouts.backend_keepalive == 4000ms);
    CHECK(c.affinity.max_sessions == 1000000);
    CHECK_FALSE(c.affinity.idle_timeout.has_value());
    CHECK(c.affinity.fallback_idle == 120000ms);
    CHECK(c.limits.max_header_size == 32 * 1024);
    CHECK(c.limits.max_url_length == 8 * 1024);
    CHECK(c.limits.max_handshake_body == 16 * 1024);
    CHECK(c.log_level == LogLevel::Info);
  }

  TEST_CASE("full valid config") {
    const std::string yaml =
        "# stickyd\n"
        "listen:\n"
        "  - 0.0.0.0:0\n"
        "  - \"[::1]:8443\"\n"
        "  - localhost:9000\n"
        "backends:\n"
        "  - name: node-1\n"
        "    address: 127.0.0.1:3001\n"
        "    weight: 3\n"
        "  - name: node_2.b\n"
        "    address: \"[::1]:3002\"\n"
        "    weight: 0\n"
        "path: /rt\n"
        "cookie:\n"
        "  name: SERVERID\n"
        "  path: /rt/\n"
        "  domain: .example.com\n"
        "  httpOnly: false\n"
        "  secure: true\n"
        "  partitioned: true\n"
        "  sameSite: None\n"
        "  maxAge: 1h\n"
        "  expires: Wed, 21 Oct 2026 07:28:00 GMT\n"
        "  priority: HIGH\n"
        "  encode: none\n"
        "timeouts:\n"
        "  connect: 250ms\n"
        "  client: 1.5m\n"
        "  server: 90\n"
        "  tunnel: 2h\n"
        "  backend_keepalive: 3s\n"
        "affinity:\n"
        "  max_sessions: 5000\n"
        "  idle_timeout: 10m\n"
        "  fallback_idle: 1d\n"
        "limits:\n"
        "  max_header_size: 64KiB\n"
        "  max_url_length: 16k\n"
        "  max_handshake_body: 1MiB\n"
        "log:\n"
        "  level: debug\n";
    const ConfigResult r = load(yaml);
    INFO(all_errors(r));
    REQUIRE(r.errors.empty());
    const Config& c = *r.config;
    REQUIRE(c.listen.size() == 3);
    CHECK(c.listen[0].port() == 0);
    CHECK(ip_of(c.listen[0]) == "0.0.0.0");
    CHECK(c.listen[1].text == "[::1]:8443");
    CHECK(c.listen[1].storage.ss_family == AF_INET6);
    CHECK(c.listen[1].length == sizeof(sockaddr_in6));
    CHECK(c.listen[1].port() == 8443);
    CHECK(ip_of(c.listen[1]) == "::1");
    CHECK(ip_of(c.listen[2]) == "127.0.0.1");
    CHECK(c.listen[2].port() == 9000);
    REQUIRE(c.backends.size() == 2);
    CHECK(c.backends[0].name == "node-1");
    CHECK(c.backends[0].weight == 3);
    CHECK(c.backends[1].name == "node_2.b");
    CHECK(c.backends[1].weight == 0);
    CHECK(c.backends[1].address.port() == 3002);
    CHECK(c.path == "/rt/");
    CHECK(c.cookie.inject);
    CHECK(c.cookie.name == "SERVERID");
    CHECK(c.cookie.path == std::optional<std::string>("/rt/"));
    CHECK(c.cookie.domain == ".example.com");
    CHECK_FALSE(c.cookie.http_only);
    CHECK(c.cookie.secure);
    CHECK(c.cookie.partitioned);
    CHECK(c.cookie.same_site == SameSite::None);
    CHECK(c.cookie.max_age == std::optional<int64_t>(3600));
    CHECK(c.cookie.expires == std::optional<int64_t>(1792567680));
    CHECK(c.cookie.priority == "High");
    CHECK(c.cookie.encode == CookieEncode::None);
    CHECK(c.timeouts.connect == 250ms);
    CHECK(c.timeouts.client == 90000ms);
    CHECK(c.timeouts.server == 90000ms);
    CHECK(c.timeouts.tunnel == 7200000ms);
    CHECK(c.timeouts.backend_keepalive == 3000ms);
    CHECK(c.affinity.max_sessions == 5000);
    CHECK(c.affinity.idle_timeout == std::optional<Millis>(600000ms));
    CHECK(c.affinity.fallback_idle == 86400000ms);
    CHECK(c.limits.max_header_size == 65536);
    CHECK(c.limits.max_url_length == 16384);
    CHECK(c.limits.max_handshake_body == 1048576);
    CHECK(c.log_level == LogLevel::Debug);
  }

  TEST_CASE("listen as a list of one, idle_timeout auto, log levels") {
    for (auto [word, level] : {std::pair{"debug", LogLevel::Debug}, {"info", LogLevel::Info},
                               {"warn", LogLevel::Warn}, {"error", LogLevel::Error}}) {
      const ConfigResult r = load(
          with(std::string("affinity: {idle_timeout: auto}\nlog: {level: ") + word + "}\n"));
      INFO(all_errors(r));
      REQUIRE(r.config);
      CHECK(r.config->log_level == level);
      CHECK_FALSE(r.config->affinity.idle_timeout.has_value());
    }
    const ConfigResult r = load("listen: [\"127.0.0.1:1\"]\nbackends: [{name: a, address: "
                                "\"127.0.0.1:2\"}]\n");
    REQUIRE(r.config);
    CHECK(r.config->listen.size() == 1);
  }

  TEST_CASE("path normalisation as engine.io does it") {
    auto path_of = [](const std::string& p) {
      const ConfigResult r = load(with("path: " + p + "\n"));
      INFO(all_errors(r));
      REQUIRE(r.config);
      return r.config->path;
    };
    CHECK(path_of("/socket.io") == "/socket.io/");
    CHECK(path_of("/socket.io/") == "/socket.io/");
    CHECK(path_of("/") == "/");
    CHECK(path_of("/a/b") == "/a/b/");
    expect_one_error(with("path: socket.io\n"), 4, 7, "must start with '/'");
    expect_one_error(with("path: \"\"\n"), 4, 7, "must start with '/'");
    expect_one_error(with("path: \"/a b\"\n"), 4, 7, "must not contain");
    expect_one_error(with("path: \"/a?x\"\n"), 4, 7, "must not contain");
    expect_one_error(with("path: [a]\n"), 4, 7, "expected a string");
  }

  TEST_CASE("cookie: true, false, and object merged over engine.io defaults") {
    {
      const ConfigResult r = load(with("cookie: false\n"));
      REQUIRE(r.config);
      CHECK_FALSE(r.config->cookie.inject);
      CHECK(r.config->cookie.name == "io");
    }
    {
      const ConfigResult r = load(with("cookie: true\n"));
      REQUIRE(r.config);
      const CookieConfig& c = r.config->cookie;
      CHECK(c.inject);
      CHECK(c.name == "io");
      CHECK(c.path == std::optional<std::string>("/"));
      CHECK(c.http_only);
      CHECK_FALSE(c.secure);
      CHECK(c.same_site == SameSite::Lax);
      CHECK(c.domain.empty());
      CHECK_FALSE(c.max_age);
      CHECK_FALSE(c.expires);
      CHECK(c.priority.empty());
      CHECK(c.encode == CookieEncode::Uri);
    }
    {
      const ConfigResult r = load(with("cookie: {name: sid}\n"));
      REQUIRE(r.config);
      const CookieConfig& c = r.config->cookie;
      CHECK(c.inject);
      CHECK(c.name == "sid");
      CHECK(c.path == std::optional<std::string>("/"));
      CHECK(c.http_only);
      CHECK(c.same_site == SameSite::Lax);
    }
    {
      // engine.io: httpOnly defaults to (path !== false).
      const ConfigResult r = load(with("cookie: {path: false}\n"));
      REQUIRE(r.config);
      CHECK_FALSE(r.config->cookie.path.has_value());
      CHECK_FALSE(r.config->cookie.http_only);
    }
    {
      const ConfigResult r = load(with("cookie: {path: false, httpOnly: true}\n"));
      REQUIRE(r.config);
      CHECK(r.config->cookie.http_only);
    }
    {
      const ConfigResult r = load(with("cookie: {}\n"));
      REQUIRE(r.config);
      CHECK(r.config->cookie.inject);
    }
  }

  TEST_CASE("cookie sameSite, priority, maxAge, expires variants") {
    auto cookie_of = [](const std::string& body) {
      const ConfigResult r = load(with("cookie: {" + body + "}\n"));
      INFO(all_errors(r));
      REQUIRE(r.config);
      return r.config->cookie;
    };
    CHECK(cookie_of("sameSite: true").same_site == SameSite::Strict);
    CHECK(cookie_of("sameSite: false").same_site == SameSite::Unset);
    CHECK(cookie_of("sameSite: STRICT").same_site == SameSite::Strict);
    CHECK(cookie_of("sameSite: Lax").same_site == SameSite::Lax);
    CHECK(cookie_of("sameSite: none, secure: true").same_site == SameSite::None);
    CHECK(cookie_of("priority: low").priority == "Low");
    CHECK(cookie_of("priority: Medium").priority == "Medium");
    CHECK(cookie_of("maxAge: -1").max_age == std::optional<int64_t>(-1));
    CHECK(cookie_of("maxAge: 0").max_age == std::optional<int64_t>(0));
    CHECK(cookie_of("maxAge: 86400").max_age == std::optional<int64_t>(86400));
    CHECK(cookie_of("maxAge: 7d").max_age == std::optional<int64_t>(604800));
    CHECK(cookie_of("maxAge: 1500ms").max_age == std::optional<int64_t>(1));
    CHECK(cookie_of("expires: \"2026-10-21T07:28:00Z\"").expires ==
          std::optional<int64_t>(1792567680));
    CHECK(cookie_of("expires: \"2026-10-21T09:28:00.123+02:00\"").expires ==
          std::optional<int64_t>(1792567680));
    CHECK(cookie_of("expires: \"Thu, 01 Jan 1970 00:00:00 GMT\"").expires ==
          std::optional<int64_t>(0));
    CHECK(cookie_of("expires: \"Tue, 29 Feb 2028 12:00:00 GMT\"").expires ==
          std::optional<int64_t>(1835438400));
    CHECK(cookie_of("encode: uri").encode == CookieEncode::Uri);
    CHECK(cookie_of("domain: example.com").domain == "example.com");
    CHECK(cookie_of("name: \"a!#$%&'*+-.^_`|~Z9\"").name == "a!#$%&'*+-.^_`|~Z9");
  }

  TEST_CASE("cookie errors") {
    expect_one_error(with("cookie: yes please\n"), 4, 9, "expected true, false or a map");
    expect_one_error(with("cookie: \"true\"\n"), 4, 9, "expected true, false or a map");
    expect_one_error(with("cookie: [1]\n"), 4, 9, "expected true, false or a map");
    expect_one_error(with("cookie:\n"), 4, 1, "expected true, false or a map");
    expect_one_error(with("cookie:\n  name: \"a b\"\n"), 5, 9, "invalid cookie name 'a b'");
    expect_one_error(with("cookie:\n  name: \"a;b\"\n"), 5, 9, "invalid cookie name");
    expect_one_error(with("cookie:\n  path: app\n"), 5, 9, "must start with '/'");
    expect_one_error(with("cookie:\n  path: true\n"), 5, 9, "or false");
    expect_one_error(with("cookie:\n  path: \"/a;b\"\n"), 5, 9, "not allowed");
    expect_one_error(with("cookie:\n  domain: \"exa mple.com\"\n"), 5, 11, "invalid cookie domain");
    expect_one_error(with("cookie:\n  domain: -bad.com\n"), 5, 11, "invalid cookie domain");
    expect_one_error(with("cookie:\n  httpOnly: yes\n"), 5, 13, "expected a boolean");
    expect_one_error(with("cookie:\n  secure: \"true\"\n"), 5, 11, "expected a boolean");
    expect_one_error(with("cookie:\n  partitioned: 1\n"), 5, 16, "expected a boolean");
    expect_one_error(with("cookie:\n  sameSite: sometimes\n"), 5, 13, "invalid sameSite");
    expect_one_error(with("cookie:\n  sameSite: none\n"), 5, 13,
                     "sameSite=None requires secure: true");
    expect_one_error(with("cookie:\n  sameSite: None\n  secure: false\n"), 5, 13,
                     "sameSite=None requires secure: true");
    expect_one_error(with("cookie:\n  maxAge: soon\n"), 5, 11, "maxAge");
    expect_one_error(with("cookie:\n  maxAge: 99999999999999999999\n"), 5, 11, "maxAge");
    expect_one_error(with("cookie:\n  expires: tomorrow\n"), 5, 12, "invalid expires date");
    // Weekday does not match the date (21 Oct 2026 is a Wednesday).
    expect_one_error(with("cookie:\n  expires: \"Thu, 21 Oct 2026 07:28:00 GMT\"\n"), 5, 12,
                     "invalid expires date");
    expect_one_error(with("cookie:\n  expires: \"2026-02-30T00:00:00Z\"\n"), 5, 12,
                     "invalid expires date");
    expect_one_error(with("cookie:\n  expires: \"2026-10-21T07:28:00\"\n"), 5, 12,
                     "invalid expires date");
    expect_one_error(with("cookie:\n  expires: 1792567680\n"), 5, 12, "invalid expires date");
    expect_one_error(with("cookie:\n  priority: urgent\n"), 5, 13, "invalid priority");
    expect_one_error(with("cookie:\n  encode: base64\n"), 5, 11, "invalid encode");
    expect_one_error(with("cookie:\n  inject: true\n"), 5, 3, "unknown key 'inject'");
    expect_one_error(with("cookie:\n  name: a\n  name: b\n"), 6, 3, "duplicate key 'name'");
  }

  TEST_CASE("listen errors") {
    expect_one_error("backends: [{name: a, address: \"127.0.0.1:1\"}]\n", 1, 1,
                     "missing required key 'listen'");
    expect_one_error(with("").replace(0, 22, "listen: []"), 1, 9,
                     "expected at least one listen address");
    expect_one_error(with("").replace(0, 22, "listen: {a: 1}"), 1, 9, "expected a string");
    expect_one_error(with("").replace(0, 22, "listen: 127.0.0.1"), 1, 9, "missing port");
    expect_one_error(with("").replace(0, 22, "listen: 127.0.0.1:65536"), 1, 9, "invalid port");
    expect_one_error(with("").replace(0, 22, "listen: 127.0.0.1:-1"), 1, 9, "invalid port");
    expect_one_error(with("").replace(0, 22, "listen: 127.0.0.1:80x"), 1, 9, "invalid port");
    expect_one_error(with("").replace(0, 22, "listen: \"127.0.0.1:\""), 1, 9, "invalid port");
    expect_one_error(with("").replace(0, 22, "listen: \":8080\""), 1, 9, "missing host");
    expect_one_error(with("").replace(0, 22, "listen: \"::1:8080\""), 1, 9, "brackets");
    expect_one_error(with("").replace(0, 22, "listen: \"[::1:8080\""), 1, 9, "missing ']'");
    expect_one_error(with("").replace(0, 22, "listen: \"[::1]8080\""), 1, 9, "missing port");
    expect_one_error(with("").replace(0, 22, "listen: \"[zz::1]:80\""), 1, 9,
                     "invalid IPv6 address");
    expect_one_error(with("").replace(0, 22, "listen: 127.1:80"), 1, 9, "invalid IPv4 address");
    expect_one_error(with("").replace(0, 22, "listen: 300.1.1.1:80"), 1, 9,
                     "invalid IPv4 address");
    expect_one_error(with("").replace(0, 22, "listen: \"bad_host!:80\""), 1, 9,
                     "invalid host name");
    // In a list, the position is the item's.
    expect_one_error(with("").replace(0, 22, "listen:\n  - 127.0.0.1:1\n  - nope"), 3, 5,
                     "missing port");
  }

  TEST_CASE("backends errors") {
    const std::string head = "listen: 127.0.0.1:8080\n";
    expect_one_error(head, 1, 1, "missing required key 'backends'");
    expect_one_error(head + "backends: []\n", 2, 11, "expected at least one backend");
    expect_one_error(head + "backends: n1\n", 2, 11, "expected a list");
    expect_one_error(head + "backends:\n", 2, 1, "expected a list");
    expect_one_error(head + "backends:\n  - n1\n", 3, 5, "expected a map");
    expect_one_error(head + "backends:\n  - address: 127.0.0.1:1\n", 3, 5,
                     "missing required key 'name'");
    expect_one_error(head + "backends:\n  - name: a\n", 3, 5, "missing required key 'address'");
    expect_one_error(head + "backends:\n  - name: a b\n    address: 127.0.0.1:1\n", 3, 11,
                     "invalid backend name 'a b'");
    expect_one_error(head + "backends:\n  - name: a\n    address: 127.0.0.1:0\n", 4, 14,
                     "invalid port");
    expect_one_error(head + "backends:\n  - name: a\n    address: 127.0.0.1:1\n    weight: -1\n",
                     5, 13, "between 0 and 1000000");
    expect_one_error(
        head + "backends:\n  - name: a\n    address: 127.0.0.1:1\n    weight: 1000001\n", 5, 13,
        "between 0 and 1000000");
    expect_one_error(head + "backends:\n  - name: a\n    address: 127.0.0.1:1\n    weight: 1.5\n",
                     5, 13, "expected an integer");
    expect_one_error(head + "backends:\n  - name: a\n    address: 127.0.0.1:1\n    weight: \"2\"\n",
                     5, 13, "expected an integer");
    expect_one_error(head + "backends:\n  - name: a\n    address: 127.0.0.1:1\n    port: 3\n", 5,
                     5, "unknown key 'port'");
    expect_one_error(head +
                         "backends:\n"
                         "  - name: n1\n"
                         "    address: 127.0.0.1:1\n"
                         "  - name: n2\n"
                         "    address: 127.0.0.1:2\n"
                         "  - name: n1\n"
                         "    address: 127.0.0.1:3\n",
                     7, 11, "duplicate backend name 'n1' (first at line 3)");
    // Weight 1000000 and 0 are fine.
    const ConfigResult r = load(head +
                                "backends:\n  - {name: a, address: 127.0.0.1:1, weight: 1000000}\n"
                                "  - {name: b, address: 127.0.0.1:2, weight: 0}\n");
    INFO(all_errors(r));
    REQUIRE(r.config);
    CHECK(r.config->backends[0].weight == 1000000);
  }

  TEST_CASE("unknown keys, duplicate keys and wrong types at top level") {
    expect_one_error(with("color: blue\n"), 4, 1, "unknown key 'color'");
    expect_one_error(with("path: /a\npath: /b\n"), 5, 1, "duplicate key 'path' (first at line 4)");
    expect_one_error(with("timeouts: 5s\n"), 4, 11, "expected a map");
    expect_one_error(with("timeouts:\n"), 4, 1, "expected a map");
    expect_one_error(with("affinity: [1]\n"), 4, 11, "expected a map");
    expect_one_error(with("limits: 1\n"), 4, 9, "expected a map");
    expect_one_error(with("log: info\n"), 4, 6, "expected a map");
    expect_one_error(with("log:\n  verbose: true\n"), 5, 3, "unknown key 'verbose'");
    expect_one_error(with("log:\n  level: loud\n"), 5, 10, "invalid log level 'loud'");
    expect_one_error(with("? [a, b]\n: 1\n"), 4, 3, "expected a string key");
  }

  TEST_CASE("timeouts errors") {
    expect_one_error(with("timeouts:\n  connect: 0\n"), 5, 12, "greater than 0");
    expect_one_error(with("timeouts:\n  connect: 0ms\n"), 5, 12, "greater than 0");
    expect_one_error(with("timeouts:\n  client: -5s\n"), 5, 11, "invalid duration '-5s'");
    expect_one_error(with("timeouts:\n  server: 5 s\n"), 5, 11, "invalid duration");
    expect_one_error(with("timeouts:\n  tunnel: 5w\n"), 5, 11, "invalid duration");
    expect_one_error(with("timeouts:\n  backend_keepalive: [1]\n"), 5, 22, "expected a duration");
    expect_one_error(with("timeouts:\n  idle: 5s\n"), 5, 3, "unknown key 'idle'");
  }

  TEST_CASE("affinity errors") {
    expect_one_error(with("affinity:\n  max_sessions: 0\n"), 5, 17, "between 1 and");
    expect_one_error(with("affinity:\n  max_sessions: 4294967296\n"), 5, 17, "between 1 and");
    expect_one_error(with("affinity:\n  max_sessions: many\n"), 5, 17, "expected an integer");
    expect_one_error(with("affinity:\n  idle_timeout: never\n"), 5, 17, "invalid duration");
    expect_one_error(with("affinity:\n  idle_timeout: 0s\n"), 5, 17, "greater than 0");
    expect_one_error(with("affinity:\n  fallback_idle: auto\n"), 5, 18, "invalid duration");
  }

  TEST_CASE("limits errors and ranges") {
    expect_one_error(with("limits:\n  max_header_size: 1023\n"), 5, 20, "between 1024 and");
    expect_one_error(with("limits:\n  max_header_size: 2MiB\n"), 5, 20, "between 1024 and 1048576");
    expect_one_error(with("limits:\n  max_header_size: 8 KiB\n"), 5, 20, "invalid size");
    expect_one_error(with("limits:\n  max_url_length: 255\n"), 5, 19, "between 256 and");
    expect_one_error(with("limits:\n  max_handshake_body: 2m\n"), 5, 23, "between 256 and");
    expect_one_error(with("limits:\n  max_handshake_body: lots\n"), 5, 23, "invalid size");
    expect_one_error(with("limits:\n  max_header_size: 4k\n  max_url_length: 8k\n"), 6, 19,
                     "must not exceed max_header_size");
    expect_one_error(with("limits:\n  max_url_length: 64k\n"), 5, 19,
                     "must not exceed max_header_size (32768)");
    {
      // Lowering only the header size pulls the default URL limit down with it.
      const ConfigResult r = load(with("limits:\n  max_header_size: 4k\n"));
      INFO(all_errors(r));
      REQUIRE(r.config);
      CHECK(r.config->limits.max_header_size == 4096);
      CHECK(r.config->limits.max_url_length == 4096);
    }
    {
      const ConfigResult r =
          load(with("limits:\n  max_header_size: 1024\n  max_url_length: 256\n"
                    "  max_handshake_body: 256\n"));
      INFO(all_errors(r));
      REQUIRE(r.config);
      CHECK(r.config->limits.max_url_length == 256);
    }
  }

  TEST_CASE("YAML syntax errors, empty and non-map documents") {
    {
      const ConfigResult r = load("listen: [127.0.0.1:1\nbackends: 2\n");
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].line >= 1);
      CHECK(r.errors[0].column >= 1);
      CHECK(r.errors[0].message.find("end of sequence flow not found") != std::string::npos);
      CHECK_FALSE(r.config);
    }
    {
      const ConfigResult r = load("listen: a: b\n");
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].to_string() == "t.yaml:1:10: illegal map value");
    }
    {
      const ConfigResult r = load(with("log:\n  - 1\n  level: info\n"));
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].line == 6);
      CHECK(r.errors[0].column == 3);
      CHECK(r.errors[0].message == "end of map not found");
    }
    {
      const ConfigResult r = load("a: b\n\tc: d\n");
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].line == 2);
    }
    {
      const ConfigResult r = load("a: *nope\n");
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].line == 1);
      CHECK(r.errors[0].message.find("anchor") != std::string::npos);
    }
    {
      const ConfigResult r = load(std::string(10000, '['));
      REQUIRE(r.errors.size() == 1);
      CHECK_FALSE(r.config);
    }
    {
      const ConfigResult r = load("");
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].line == 0);
      CHECK(r.errors[0].to_string().rfind("t.yaml: ", 0) == 0);
      CHECK(r.errors[0].message.find("empty") != std::string::npos);
    }
    {
      const ConfigResult r = load("# only a comment\n");
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].message.find("empty") != std::string::npos);
    }
    expect_one_error("- a\n- b\n", 1, 1, "expected a map at the top level");
    expect_one_error("just text\n", 1, 1, "expected a map at the top level");
  }

  TEST_CASE("all errors are collected, in document order") {
    const std::string yaml =
        "listen: 127.0.0.1\n"           // 1: missing port
        "bogus: 1\n"                     // 2: unknown key
        "backends:\n"                    // 3
        "  - name: a\n"                  // 4
        "    address: 127.0.0.1:1\n"     // 5
        "  - name: a\n"                  // 6: duplicate
        "    address: 127.0.0.1:99999\n"  // 7: bad port
        "timeouts:\n"                    // 8
        "  connect: soon\n"              // 9: bad duration
        "cookie:\n"                      // 10
        "  sameSite: none\n"             // 11: needs secure
        "  color: red\n"                 // 12: unknown key
        "limits:\n"                      // 13
        "  max_url_length: 1\n";         // 14: range
    const ConfigResult r = load(yaml);
    INFO(all_errors(r));
    CHECK_FALSE(r.config);
    REQUIRE(r.errors.size() == 8);
    const int lines[] = {1, 2, 6, 7, 9, 11, 12, 14};
    for (size_t i = 0; i < 8; ++i) CHECK(r.errors[i].line == lines[i]);
    CHECK(r.errors[0].to_string() ==
          "t.yaml:1:9: invalid address '127.0.0.1': missing port (expected host:port)");
    CHECK(r.errors[1].to_string() == "t.yaml:2:1: unknown key 'bogus'");
    CHECK(r.errors[2].message == "duplicate backend name 'a' (first at line 4)");
  }

  TEST_CASE("ConfigError::to_string") {
    CHECK(ConfigError{"f.yaml", 3, 7, "boom"}.to_string() == "f.yaml:3:7: boom");
    CHECK(ConfigError{"f.yaml", 0, 0, "boom"}.to_string() == "f.yaml: boom");
  }

  TEST_CASE("load_config_file") {
    char tmpl[] = "/tmp/stickyd_test_config_XXXXXX";
    const int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    const std::string path = tmpl;
    {
      std::ofstream out(path);
      out << kMinimal;
    }
    ConfigResult r = load_config_file(path);
    INFO(all_errors(r));
    REQUIRE(r.config);
    CHECK(r.config->source == path);
    {
      std::ofstream out(path);
      out << kMinimal << "nope: 1\n";
    }
    r = load_config_file(path);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].file == path);
    CHECK(r.errors[0].to_string() == path + ":4:1: unknown key 'nope'");
    std::remove(path.c_str());

    r = load_config_file(path);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 0);
    CHECK(r.errors[0].to_string() == path + ": cannot read file: No such file or directory");
    CHECK_FALSE(r.config);

    r = load_config_file("/tmp");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 0);
    CHECK(r.errors[0].message.find("cannot read file") != std::string::npos);
  }
}

TEST_SUITE("config parsers") {
  TEST_CASE("parse_duration") {
    CHECK(parse_duration("250ms") == std::optional<Millis>(250ms));
    CHECK(parse_duration("5s") == std::optional<Millis>(5000ms));
    CHECK(parse_duration("2m") == std::optional<Millis>(120000ms));
    CHECK(parse_duration("1h") == std::optional<Millis>(3600000ms));
    CHECK(parse_duration("1d") == std::optional<Millis>(86400000ms));
    CHECK(parse_duration("30") == std::optional<Millis>(30000ms));
    CHECK(parse_duration("0") == std::optional<Millis>(0ms));
    CHECK(parse_duration("1.5s") == std::optional<Millis>(1500ms));
    CHECK(parse_duration("0.25m") == std::optional<Millis>(15000ms));
    CHECK(parse_duration("2.5ms") == std::optional<Millis>(2ms));
    CHECK(parse_duration("007s") == std::optional<Millis>(7000ms));
    for (const char* bad : {"", "-1", "-5s", "+5s", "s", "5x", "5 s", " 5s", "5s ", "1.5", ".5s",
                            "5.s", "1e3", "5S", "5sec", "1h30m", "0x10", "5ms5",
                            "99999999999999999999", "9999999999999999d", "1.0000000001s"}) {
      INFO(bad);
      CHECK_FALSE(parse_duration(bad).has_value());
    }
    // Largest representable value and one past it.
    CHECK(parse_duration("9223372036854775807ms") ==
          std::optional<Millis>(Millis(9223372036854775807LL)));
    CHECK_FALSE(parse_duration("9223372036854775808ms").has_value());
    CHECK_FALSE(parse_duration("9223372036854776s").has_value());
  }

  TEST_CASE("parse_size") {
    CHECK(parse_size("4096") == std::optional<uint64_t>(4096));
    CHECK(parse_size("0") == std::optional<uint64_t>(0));
    for (const char* k : {"16k", "16K", "16KB", "16KiB"}) {
      CHECK(parse_size(k) == std::optional<uint64_t>(16384));
    }
    for (const char* m : {"1m", "1M", "1MB", "1MiB"}) {
      CHECK(parse_size(m) == std::optional<uint64_t>(1048576));
    }
    for (const char* bad : {"", "k", "-1", "+1", "1.5k", "1 k", "1kb", "1kib", "1G", "1GiB",
                            "1KiBs", "0x10", "99999999999999999999",
                            "18014398509481984k"}) {
      INFO(bad);
      CHECK_FALSE(parse_size(bad).has_value());
    }
    CHECK(parse_size("18446744073709551615") ==
          std::optional<uint64_t>(18446744073709551615ULL));
    CHECK(parse_size("17592186044415M") == std::optional<uint64_t>(17592186044415ULL << 20));
    CHECK_FALSE(parse_size("17592186044416M").has_value());
  }

  TEST_CASE("parse_socket_address") {
    SocketAddress a;
    CHECK_FALSE(parse_socket_address("10.1.2.3:443", a, false).has_value());
    CHECK(a.text == "10.1.2.3:443");
    CHECK(a.port() == 443);
    CHECK(ip_of(a) == "10.1.2.3");
    CHECK_FALSE(parse_socket_address("[::]:0", a, true).has_value());
    CHECK(a.port() == 0);
    CHECK(a.storage.ss_family == AF_INET6);
    CHECK(parse_socket_address("[::]:0", a, false).has_value());
    CHECK_FALSE(parse_socket_address("LocalHost:65535", a, false).has_value());
    CHECK(a.port() == 65535);
    CHECK(ip_of(a) == "127.0.0.1");
    CHECK_FALSE(parse_socket_address("[fe80::1]:80", a, false).has_value());
    CHECK(ip_of(a) == "fe80::1");
    CHECK(parse_socket_address("", a, true).has_value());
    CHECK(parse_socket_address("1.2.3.4:123456", a, true).has_value());
    CHECK_FALSE(parse_socket_address("1.2.3.4:0080", a, true).has_value());
    CHECK(parse_socket_address("host..name:80", a, true).has_value());
    CHECK(parse_socket_address("-host:80", a, true).has_value());
    SocketAddress empty;
    CHECK(empty.port() == -1);
  }
}
