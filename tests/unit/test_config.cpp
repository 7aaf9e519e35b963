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

// The config loads without errors; returns it.
Config load_ok(const std::string& yaml) {
  const ConfigResult r = load(yaml);
  INFO("yaml:\n" << yaml << "errors:\n" << all_errors(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.config.has_value());
  return *r.config;
}

// Head of a document whose `backends:` list starts on line 3.
const char* const kHead = "listen: 127.0.0.1:8080\nbackends:\n";

// Independently computed (openssl dgst -sha256 -mac HMAC, first 12 bytes, base64url).
const char* const kSecret = "0123456789abcdef-stickyd";
const char* const kDerivedN1 = "0RxSNBdl_HqiQ50d";
const char* const kDerivedN2 = "Ng10r0OyY_bj9DMw";

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("more backends than the affinity table counts is refused at the list") {
    std::string yaml = "listen: 127.0.0.1:8080\nbackends:\n";
    for (int i = 0; i < 1025; ++i)
      yaml += "  - {name: n" + std::to_string(i) + ", address: 127.0.0.1:3001}\n";
    expect_one_error(yaml, 3, 3, "too many backends (1025; at most 1024)");
  }

  TEST_CASE("workers: a count, or auto (one per core)") {
    auto workers = [](const std::string& v) {
      return load(std::string(kMinimal) + "workers: " + v + "\n");
    };
    CHECK(load(kMinimal).config->workers == 0);
    CHECK(workers("auto").config->workers == 0);
    CHECK(workers("1").config->workers == 1);
    CHECK(workers("8").config->workers == 8);
    expect_one_error(std::string(kMinimal) + "workers: 0\n", 4, 10, "between 1 and 256");
    expect_one_error(std::string(kMinimal) + "workers: many\n", 4, 10, "expected an integer");
  }

  TEST_CASE("minimal config gets every default") {
    const ConfigResult r = load(kMinimal);
    INFO(all_errors(r));
    REQUIRE(r.errors.empty());
    REQUIRE(r.config.has_value());
    const Config& c = *r.config;
    CHECK(c.source == "t.yaml");
    REQUIRE(c.listen.size() == 1);
    CHECK(c.listen[0].text() == "127.0.0.1:8080");
    CHECK(c.listen[0].address.port() == 8080);
    CHECK(c.listen[0].address.storage.ss_family == AF_INET);
    CHECK(c.listen[0].address.length == sizeof(sockaddr_in));
    CHECK(ip_of(c.listen[0].address) == "127.0.0.1");
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
    CHECK(c.listen[0].address.port() == 0);
    CHECK(ip_of(c.listen[0].address) == "0.0.0.0");
    CHECK(c.listen[1].text() == "[::1]:8443");
    CHECK(c.listen[1].address.storage.ss_family == AF_INET6);
    CHECK(c.listen[1].address.length == sizeof(sockaddr_in6));
    CHECK(c.listen[1].address.port() == 8443);
    CHECK(ip_of(c.listen[1].address) == "::1");
    CHECK(ip_of(c.listen[2].address) == "127.0.0.1");
    CHECK(c.listen[2].address.port() == 9000);
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
    expect_one_error(with("").replace(0, 22, "listen: {address: 127.0.0.1:1, a: 1}"), 1, 32,
                     "unknown key 'a'");
    expect_one_error(with("").replace(0, 22, "listen: {}"), 1, 9,
                     "listen entry is missing required key 'address'");
    expect_one_error(with("").replace(0, 22, "listen: [[1]]"), 1, 10, "expected a string");
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
    expect_one_error(with("log:\n  rate_limit: -1\n"), 5, 15, "between 0 and 1000000");
    CHECK(load_ok(with("log: {rate_limit: 0}\n")).log_rate_limit == 0);
    CHECK(load_ok(with("log: {level: warn, rate_limit: 50}\n")).log_rate_limit == 50);
    CHECK(load_ok(with("log: {level: warn}\n")).log_rate_limit == 10);
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

TEST_SUITE("config: persistence, balancing, health, admin, headers") {
  TEST_CASE("new keys get their defaults") {
    const Config c = load_ok(kMinimal);
    CHECK(c.balance == BalancePolicy::RoundRobin);
    CHECK_FALSE(c.access_log);
    CHECK_FALSE(c.access_log_json);
    CHECK(c.shutdown_grace == 30000ms);
    REQUIRE(c.backends.size() == 1);
    CHECK(c.backends[0].cookie == "n1");
    CHECK(c.backends[0].cookie_aliases.empty());
    CHECK(c.sticky.secret.empty());
    CHECK_FALSE(c.sticky.strict);
    const ServerCookieConfig& sc = c.sticky.server_cookie;
    CHECK_FALSE(sc.enabled);
    CHECK(sc.name == "SERVERID");
    CHECK(sc.mode == ServerCookieMode::Insert);
    CHECK_FALSE(sc.indirect);
    CHECK_FALSE(sc.nocache);
    CHECK_FALSE(sc.preserve);
    CHECK_FALSE(sc.httponly);
    CHECK_FALSE(sc.secure);
    CHECK(sc.domains.empty());
    CHECK_FALSE(sc.maxidle.has_value());
    CHECK_FALSE(sc.maxlife.has_value());
    CHECK_FALSE(c.sticky.tag.enabled);
    CHECK_FALSE(c.sticky.tag.accept_backend_tags);
    CHECK(c.sticky.tag.separator == ".");
    const HealthCheckConfig& h = c.health;
    CHECK_FALSE(h.enabled);
    CHECK(h.method == "GET");
    CHECK(h.path.empty());
    CHECK(h.expect_status == 200);
    CHECK(h.interval == 2000ms);
    CHECK(h.timeout == 1000ms);
    CHECK(h.rise == 2);
    CHECK(h.fall == 3);
    CHECK(h.slow_start == 0ms);
    CHECK(h.passive_fall == 3);
    CHECK(h.evict_over == 30000ms);
    CHECK_FALSE(c.admin.enabled);
    CHECK(c.admin.listen.text == "127.0.0.1:9901");
    CHECK(c.admin.listen.port() == 9901);
    CHECK(ip_of(c.admin.listen) == "127.0.0.1");
    CHECK(c.admin.token.empty());
    CHECK(c.admin.request_timeout == 5000ms);
    CHECK(c.admin.max_connections_per_ip == 8);
    CHECK(c.headers.handshake.empty());
    CHECK(c.headers.all.empty());
  }

  TEST_CASE("balance") {
    for (auto [word, policy] : {std::pair{"round_robin", BalancePolicy::RoundRobin},
                                {"least_conn", BalancePolicy::LeastConn},
                                {"random", BalancePolicy::Random},
                                {"hash", BalancePolicy::Hash},
                                {"Least_Conn", BalancePolicy::LeastConn}}) {
      INFO(word);
      CHECK(load_ok(with(std::string("balance: ") + word + "\n")).balance == policy);
    }
    expect_one_error(with("balance: fastest\n"), 4, 10, "invalid balance 'fastest'");
    expect_one_error(with("balance: [hash]\n"), 4, 10, "expected a string");
    expect_one_error(with("balance:\n"), 4, 1, "expected a string");
  }

  TEST_CASE("access_log: bool or {format}") {
    CHECK_FALSE(load_ok(with("access_log: false\n")).access_log);
    {
      const Config c = load_ok(with("access_log: true\n"));
      CHECK(c.access_log);
      CHECK_FALSE(c.access_log_json);
    }
    {
      const Config c = load_ok(with("access_log: {format: json}\n"));
      CHECK(c.access_log);
      CHECK(c.access_log_json);
    }
    {
      const Config c = load_ok(with("access_log:\n  format: TEXT\n"));
      CHECK(c.access_log);
      CHECK_FALSE(c.access_log_json);
    }
    CHECK(load_ok(with("access_log: {}\n")).access_log);
    expect_one_error(with("access_log: yes\n"), 4, 13, "expected true, false or a map");
    expect_one_error(with("access_log:\n"), 4, 1, "expected true, false or a map");
    expect_one_error(with("access_log: {format: xml}\n"), 4, 22, "invalid access log format 'xml'");
    expect_one_error(with("access_log: {level: x}\n"), 4, 14, "unknown key 'level'");
  }

  TEST_CASE("timeouts.shutdown_grace may be 0") {
    CHECK(load_ok(with("timeouts:\n  shutdown_grace: 0\n")).shutdown_grace == 0ms);
    CHECK(load_ok(with("timeouts:\n  shutdown_grace: 10s\n")).shutdown_grace == 10000ms);
    expect_one_error(with("timeouts:\n  shutdown_grace: -1s\n"), 5, 19, "invalid duration '-1s'");
    expect_one_error(with("timeouts:\n  shutdown_grace: [1]\n"), 5, 19, "expected a duration");
    // The zero allowance is shutdown_grace's own.
    expect_one_error(with("timeouts:\n  connect: 0s\n"), 5, 12, "greater than 0");
  }

  TEST_CASE("timeouts.drain_idle and timeouts.close_spread (SIGTERM)") {
    const Config d = load_ok(kMinimal);
    CHECK(d.timeouts.drain_idle == 5000ms);
    CHECK_FALSE(d.timeouts.close_spread.has_value());  // the whole grace
    const Config c = load_ok(with("timeouts:\n  drain_idle: 1500ms\n  close_spread: 10s\n"));
    CHECK(c.timeouts.drain_idle == 1500ms);
    CHECK(c.timeouts.close_spread == 10000ms);
    CHECK(load_ok(with("timeouts:\n  close_spread: 0\n")).timeouts.close_spread == 0ms);
    // Equal to the grace, in either order.
    CHECK(load_ok(with("timeouts:\n  close_spread: 5s\n  shutdown_grace: 5s\n")).timeouts.close_spread == 5000ms);
    expect_one_error(with("timeouts:\n  drain_idle: 0\n"), 5, 15, "greater than 0");
    expect_one_error(with("timeouts:\n  drain_idle: soon\n"), 5, 15, "invalid duration 'soon'");
    // Longer than the grace (default 30 s, or set before or after it): at close_spread.
    expect_one_error(with("timeouts:\n  close_spread: 31s\n"), 5, 17,
                     "close_spread must not exceed shutdown_grace (30000 ms)");
    expect_one_error(with("timeouts:\n  close_spread: 3s\n  shutdown_grace: 2s\n"), 5, 17,
                     "must not exceed shutdown_grace");
    expect_one_error(with("timeouts:\n  shutdown_grace: 2s\n  close_spread: 2001ms\n"), 6, 17,
                     "must not exceed shutdown_grace");
  }

  TEST_CASE("backend cookie and cookie_aliases") {
    {
      const Config c = load_ok(std::string(kHead) +
                               "  - name: n1\n"
                               "    address: 127.0.0.1:3001\n"
                               "    cookie: a1\n"
                               "    cookie_aliases: [old1, \"old-2\"]\n"
                               "  - name: n2\n"
                               "    address: 127.0.0.1:3002\n"
                               "    cookie_aliases: legacy\n"
                               "  - name: n3\n"
                               "    address: 127.0.0.1:3003\n"
                               "    cookie: \"x=y/z!#\"\n"
                               "    cookie_aliases: []\n");
      REQUIRE(c.backends.size() == 3);
      CHECK(c.backends[0].cookie == "a1");
      CHECK(c.backends[0].cookie_aliases == std::vector<std::string>{"old1", "old-2"});
      CHECK(c.backends[1].cookie == "n2");  // default: the name
      CHECK(c.backends[1].cookie_aliases == std::vector<std::string>{"legacy"});
      CHECK(c.backends[2].cookie == "x=y/z!#");  // any cookie-octets without sid tags
      CHECK(c.backends[2].cookie_aliases.empty());
    }
    {
      // With a secret, the default is derived; an explicit value still wins. The sticky
      // section may come before the backends.
      const Config c = load_ok(std::string("sticky:\n  secret: ") + kSecret + "\n" + kHead +
                               "  - {name: n1, address: 127.0.0.1:3001}\n"
                               "  - {name: n2, address: 127.0.0.1:3002}\n"
                               "  - {name: n3, address: 127.0.0.1:3003, cookie: mine}\n");
      CHECK(c.sticky.secret == kSecret);
      CHECK(c.backends[0].cookie == kDerivedN1);
      CHECK(c.backends[1].cookie == kDerivedN2);
      CHECK(c.backends[2].cookie == "mine");
    }
    {
      // 64 bytes is the limit.
      const Config c = load_ok(std::string(kHead) + "  - name: n1\n    address: 127.0.0.1:1\n" +
                               "    cookie: " + std::string(64, 'c') + "\n");
      CHECK(c.backends[0].cookie.size() == 64);
    }
  }

  TEST_CASE("backend cookie errors") {
    const std::string b1 = std::string(kHead) + "  - name: n1\n    address: 127.0.0.1:3001\n";
    // Line 5 onwards belongs to backend n1.
    expect_one_error(b1 + "    cookie: \"\"\n", 5, 13, "cookie value must not be empty");
    expect_one_error(b1 + "    cookie: [a]\n", 5, 13, "expected a string");
    expect_one_error(b1 + "    cookie:\n", 5, 5, "expected a string");
    expect_one_error(b1 + "    cookie: \"a b\"\n", 5, 13,
                     "cookie value 'a b' contains characters not allowed in a cookie value");
    expect_one_error(b1 + "    cookie: \"a;b\"\n", 5, 13, "not allowed in a cookie value");
    expect_one_error(b1 + "    cookie: \"a\\\\b\"\n", 5, 13, "not allowed in a cookie value");
    expect_one_error(b1 + "    cookie: " + std::string(65, 'c') + "\n", 5, 13,
                     "is longer than 64 bytes");
    expect_one_error(b1 + "    cookie_aliases: [ok, \"a,b\"]\n", 5, 26,
                     "cookie value 'a,b' contains characters");
    expect_one_error(b1 + "    cookie_aliases: [ok, \"\"]\n", 5, 26, "must not be empty");
    expect_one_error(b1 + "    cookie_aliases: {a: b}\n", 5, 21,
                     "expected a string or a list of strings");
    expect_one_error(b1 + "    cookie_aliases: [[a]]\n", 5, 22, "expected a string");
    // Unique across backends, reported at the later occurrence.
    expect_one_error(b1 + "    cookie: shared\n"
                          "  - name: n2\n"
                          "    address: 127.0.0.1:3002\n"
                          "    cookie: shared\n",
                     8, 13, "cookie value 'shared' already used by backend 'n1'");
    // A default (the name) colliding with an earlier explicit value: at the name.
    expect_one_error(b1 + "    cookie: n2\n"
                          "  - name: n2\n"
                          "    address: 127.0.0.1:3002\n",
                     6, 11, "cookie value 'n2' already used by backend 'n1'");
    // An alias colliding with another backend's (default) value.
    expect_one_error(b1 + "  - name: n2\n"
                          "    address: 127.0.0.1:3002\n"
                          "    cookie_aliases: [n1]\n",
                     7, 22, "cookie value 'n1' already used by backend 'n1'");
    // ... and with the backend's own value.
    expect_one_error(b1 + "    cookie: a\n    cookie_aliases: a\n", 6, 21,
                     "cookie value 'a' already used by backend 'n1'");
    // With a server cookie, HAProxy's delimiters are out.
    expect_one_error(b1 + "    cookie: \"a~b\"\nsticky:\n  server_cookie: {}\n", 5, 13,
                     "must not contain '~' or '|'");
    expect_one_error(b1 + "    cookie_aliases: \"a|b\"\nsticky:\n  server_cookie: {}\n", 5, 21,
                     "must not contain '~' or '|'");
    CHECK(load_ok(b1 + "    cookie: \"a~b|c\"\n").backends[0].cookie == "a~b|c");
  }

  TEST_CASE("cookie values under sid tagging") {
    const std::string tag = "sticky:\n  tag_sids: true\n";
    // Defaults to the name, which has the separator: reported at the name.
    expect_one_error(std::string(kHead) + "  - name: node.1\n    address: 127.0.0.1:1\n" + tag, 3,
                     11, "cookie value 'node.1' contains the sid tag separator '.'");
    // Another separator: '.' is still not a sid character.
    expect_one_error(std::string(kHead) + "  - name: node.1\n    address: 127.0.0.1:1\n" +
                         "sticky:\n  tag_sids: {separator: \"~\"}\n",
                     3, 11, "cookie value 'node.1' may only contain A-Z a-z 0-9 _ -");
    expect_one_error(std::string(kHead) +
                         "  - {name: n1, address: 127.0.0.1:1, cookie: \"a~b\"}\n" +
                         "sticky:\n  tag_sids: {separator: \"~\"}\n",
                     3, 46, "contains the sid tag separator '~'");
    // backend_tags alone also embeds the value in the sid.
    expect_one_error(std::string(kHead) +
                         "  - name: n1\n    address: 127.0.0.1:1\n    cookie_aliases: [\"a=b\"]\n" +
                         "sticky:\n  backend_tags: {separator: \"!\"}\n",
                     5, 22, "cookie value 'a=b' may only contain");
    // A derived value always fits, whatever the name.
    const Config c = load_ok(std::string(kHead) +
                             "  - {name: node.1, address: 127.0.0.1:1}\n"
                             "  - {name: n2, address: 127.0.0.1:2, cookie: Ab_9-z}\n" +
                             "sticky:\n  tag_sids: true\n  secret: " + kSecret + "\n");
    CHECK(c.backends[0].cookie == derive_cookie_value(kSecret, "node.1"));
    CHECK(c.backends[0].cookie == "AtcSthdxZn_R6_ty");  // openssl dgst, computed apart
    CHECK(c.backends[1].cookie == "Ab_9-z");
    // A bad secret is reported alone, not also as every defaulted value.
    expect_one_error(std::string(kHead) + "  - {name: node.1, address: 127.0.0.1:1}\n" +
                         "sticky:\n  tag_sids: true\n  secret: tooshort\n",
                     6, 11, "at least 16 bytes long (got 8)");
  }

  TEST_CASE("sticky: secret and on_down") {
    CHECK(load_ok(with("sticky:\n  secret: \"0123456789abcdef\"\n")).sticky.secret ==
          "0123456789abcdef");
    CHECK(load_ok(with("sticky: {on_down: strict}\n")).sticky.strict);
    CHECK_FALSE(load_ok(with("sticky: {on_down: redispatch}\n")).sticky.strict);
    CHECK(load_ok(with("sticky: {}\n")).sticky.secret.empty());
    expect_one_error(with("sticky:\n  secret: short\n"), 5, 11,
                     "sticky secret must be at least 16 bytes long (got 5)");
    expect_one_error(with("sticky:\n  secret: \"\"\n"), 5, 11, "at least 16 bytes");
    expect_one_error(with("sticky:\n  secret: [a]\n"), 5, 11, "expected a string");
    expect_one_error(with("sticky:\n  on_down: panic\n"), 5, 12, "invalid on_down 'panic'");
    expect_one_error(with("sticky: on\n"), 4, 9, "expected a map");
    expect_one_error(with("sticky:\n  sticky: true\n"), 5, 3, "unknown key 'sticky'");
    expect_one_error(with("sticky:\n  secret: 0123456789abcdef\n  secret: 0123456789abcdef\n"), 6,
                     3, "duplicate key 'secret'");
  }

  TEST_CASE("sticky.server_cookie") {
    {
      const Config c =
          load_ok(with("sticky:\n"
                       "  server_cookie:\n"
                       "    name: SRV\n"
                       "    mode: prefix\n"
                       "    indirect: true\n"
                       "    nocache: true\n"
                       "    preserve: true\n"
                       "    httponly: true\n"
                       "    secure: true\n"
                       "    domain: [.example.com, example.org]\n"
                       "    maxidle: 30m\n"
                       "    maxlife: 8h\n"));
      const ServerCookieConfig& sc = c.sticky.server_cookie;
      CHECK(sc.enabled);
      CHECK(sc.name == "SRV");
      CHECK(sc.mode == ServerCookieMode::Prefix);
      CHECK(sc.indirect);
      CHECK(sc.nocache);
      CHECK(sc.preserve);
      CHECK(sc.httponly);
      CHECK(sc.secure);
      CHECK(sc.domains == std::vector<std::string>{".example.com", "example.org"});
      CHECK(sc.maxidle == std::optional<Millis>(1800000ms));
      CHECK(sc.maxlife == std::optional<Millis>(28800000ms));
    }
    {
      const Config c = load_ok(with("sticky:\n  server_cookie: {}\n"));
      CHECK(c.sticky.server_cookie.enabled);
      CHECK(c.sticky.server_cookie.name == "SERVERID");
      CHECK(c.sticky.server_cookie.mode == ServerCookieMode::Insert);
    }
    CHECK(load_ok(with("sticky: {server_cookie: true}\n")).sticky.server_cookie.enabled);
    CHECK_FALSE(load_ok(with("sticky: {server_cookie: false}\n")).sticky.server_cookie.enabled);
    CHECK(load_ok(with("sticky: {server_cookie: {mode: REWRITE}}\n")).sticky.server_cookie.mode ==
          ServerCookieMode::Rewrite);
    CHECK(load_ok(with("sticky: {server_cookie: {domain: example.com}}\n"))
              .sticky.server_cookie.domains == std::vector<std::string>{"example.com"});
    // preserve is fine with insert, or with indirect.
    CHECK(
        load_ok(with("sticky: {server_cookie: {preserve: true}}\n")).sticky.server_cookie.preserve);
    CHECK(load_ok(with("sticky: {server_cookie: {mode: prefix, preserve: true, indirect: true}}\n"))
              .sticky.server_cookie.preserve);
  }

  TEST_CASE("sticky.server_cookie errors") {
    const std::string sc = with("sticky:\n  server_cookie:\n");  // keys on line 6
    expect_one_error(with("sticky:\n  server_cookie: 1\n"), 5, 18, "expected true, false or a map");
    expect_one_error(with("sticky:\n  server_cookie:\n"), 5, 3, "expected true, false or a map");
    expect_one_error(sc + "    name: \"a b\"\n", 6, 11, "invalid cookie name 'a b'");
    expect_one_error(sc + "    mode: sticky\n", 6, 11, "invalid server cookie mode 'sticky'");
    expect_one_error(sc + "    indirect: yes\n", 6, 15, "expected a boolean");
    expect_one_error(sc + "    httponly: 1\n", 6, 15, "expected a boolean");
    expect_one_error(sc + "    domain: \"bad domain\"\n", 6, 13,
                     "invalid cookie domain 'bad domain'");
    expect_one_error(sc + "    domain: []\n", 6, 13, "non-empty list of domains");
    expect_one_error(sc + "    domain: [a.com, -b.com]\n", 6, 21, "invalid cookie domain '-b.com'");
    expect_one_error(sc + "    maxidle: 0\n", 6, 14, "greater than 0");
    expect_one_error(sc + "    maxlife: forever\n", 6, 14, "invalid duration 'forever'");
    expect_one_error(sc + "    attr: x\n", 6, 5, "unknown key 'attr'");
    // As HAProxy: rewrite excludes indirect; preserve needs insert or indirect.
    expect_one_error(sc + "    mode: rewrite\n    indirect: true\n", 7, 15,
                     "indirect cannot be used with mode rewrite");
    expect_one_error(sc + "    preserve: true\n    mode: prefix\n", 6, 15,
                     "preserve requires mode insert or indirect");
    expect_one_error(with("sticky: {server_cookie: {mode: rewrite, preserve: true}}\n"), 4, 51,
                     "preserve requires mode insert or indirect");
    CHECK(load_ok(sc + "    preserve: true\n    mode: prefix\n    indirect: true\n")
              .sticky.server_cookie.preserve);
    // Same name as the session cookie: insert and rewrite collide, prefix is how it works.
    expect_one_error(with("sticky:\n  server_cookie: {name: io}\n"), 5, 25,
                     "server cookie name 'io' is the same as cookie.name");
    expect_one_error(with("sticky:\n  server_cookie: {name: io, mode: rewrite}\n"), 5, 25,
                     "with mode rewrite they would collide");
    CHECK(load_ok(with("sticky:\n  server_cookie: {name: io, mode: prefix}\n"))
              .sticky.server_cookie.name == "io");
    // The default name against an explicit cookie.name, in either order.
    expect_one_error(
        with("cookie: {name: SERVERID}\nsticky:\n  server_cookie:\n    mode: insert\n"), 7, 5,
        "default server cookie name 'SERVERID' is the same as cookie.name");
    expect_one_error(with("sticky:\n  server_cookie:\n    name: sid\ncookie: {name: sid}\n"), 6, 11,
                     "server cookie name 'sid' is the same as cookie.name");
    CHECK(load_ok(with("cookie: {name: SERVERID}\nsticky: {server_cookie: {name: SRV}}\n"))
              .sticky.server_cookie.enabled);
    // A prefix-mode server cookie and sid tags together are fine.
    const Config c = load_ok(with("sticky: {server_cookie: {mode: prefix}, tag_sids: true}\n"));
    CHECK(c.sticky.server_cookie.mode == ServerCookieMode::Prefix);
    CHECK(c.sticky.tag.enabled);
  }

  TEST_CASE("sticky.tag_sids and sticky.backend_tags") {
    auto tag_of = [](const std::string& body) {
      return load_ok(with("sticky:\n  " + body + "\n")).sticky.tag;
    };
    SidTagConfig t = tag_of("tag_sids: true");
    CHECK(t.enabled);
    CHECK(t.accept_backend_tags);
    CHECK(t.separator == ".");
    t = tag_of("tag_sids: false");
    CHECK_FALSE(t.enabled);
    CHECK_FALSE(t.accept_backend_tags);
    t = tag_of("tag_sids: {separator: \"~\"}");
    CHECK(t.enabled);
    CHECK(t.accept_backend_tags);
    CHECK(t.separator == "~");
    t = tag_of("tag_sids: {}");
    CHECK(t.enabled);
    CHECK(t.accept_backend_tags);
    t = tag_of("tag_sids: {enabled: true, accept_backend_tags: true}");
    CHECK(t.enabled);
    CHECK(t.accept_backend_tags);
    t = tag_of("tag_sids: {enabled: false}");
    CHECK_FALSE(t.enabled);
    CHECK_FALSE(t.accept_backend_tags);
    t = tag_of("tag_sids: {enabled: false, accept_backend_tags: true, separator: \":\"}");
    CHECK_FALSE(t.enabled);
    CHECK(t.accept_backend_tags);
    CHECK(t.separator == ":");
    for (const char* sep : {".", "~", "!", "*", ":"}) {
      INFO(sep);
      CHECK(tag_of(std::string("tag_sids: {separator: \"") + sep + "\"}").separator == sep);
    }
    t = tag_of("backend_tags: {separator: \"!\"}");
    CHECK_FALSE(t.enabled);
    CHECK(t.accept_backend_tags);
    CHECK(t.separator == "!");
    t = tag_of("backend_tags: true");
    CHECK_FALSE(t.enabled);
    CHECK(t.accept_backend_tags);
    CHECK(t.separator == ".");
    t = tag_of("backend_tags: false");
    CHECK_FALSE(t.accept_backend_tags);
    // One of the two off: the other decides.
    const Config c =
        load_ok(with("sticky:\n  tag_sids: false\n  backend_tags: {separator: \"*\"}\n"));
    CHECK_FALSE(c.sticky.tag.enabled);
    CHECK(c.sticky.tag.accept_backend_tags);
    CHECK(c.sticky.tag.separator == "*");
  }

  TEST_CASE("sticky.tag_sids and sticky.backend_tags errors") {
    expect_one_error(with("sticky:\n  tag_sids: maybe\n"), 5, 13, "expected true, false or a map");
    expect_one_error(with("sticky:\n  tag_sids: {separator: ab}\n"), 5, 25,
                     "invalid separator 'ab' (expected one of . ~ ! * :)");
    expect_one_error(with("sticky:\n  tag_sids: {separator: \"-\"}\n"), 5, 25,
                     "invalid separator '-'");
    expect_one_error(with("sticky:\n  tag_sids: {separator: \"\"}\n"), 5, 25, "invalid separator");
    expect_one_error(with("sticky:\n  tag_sids: {enabled: 1}\n"), 5, 23, "expected a boolean");
    expect_one_error(with("sticky:\n  tag_sids: {prefix: a}\n"), 5, 14, "unknown key 'prefix'");
    expect_one_error(with("sticky:\n  tag_sids: {accept_backend_tags: false}\n"), 5, 35,
                     "accept_backend_tags cannot be false while tag_sids is enabled");
    expect_one_error(with("sticky:\n  backend_tags: [a]\n"), 5, 17,
                     "expected true, false or a map");
    expect_one_error(with("sticky:\n  backend_tags: {enabled: true}\n"), 5, 18,
                     "unknown key 'enabled'");
    expect_one_error(with("sticky:\n  backend_tags: {separator: \"|\"}\n"), 5, 29,
                     "invalid separator '|'");
    expect_one_error(with("sticky:\n  tag_sids: true\n  backend_tags: true\n"), 6, 3,
                     "tag_sids and backend_tags cannot both be on");
    expect_one_error(with("sticky:\n  backend_tags: {}\n  tag_sids: {enabled: false, "
                          "accept_backend_tags: true}\n"),
                     6, 3, "cannot both be on");
  }

  TEST_CASE("health") {
    {
      const Config c = load_ok(with("health: {}\n"));
      CHECK(c.health.enabled);
      CHECK(c.health.method == "GET");
      CHECK(c.health.path.empty());
      CHECK(c.health.interval == 2000ms);
      CHECK(c.health.timeout == 1000ms);
    }
    CHECK(load_ok(with("health: true\n")).health.enabled);
    CHECK_FALSE(load_ok(with("health: false\n")).health.enabled);
    CHECK_FALSE(load_ok(with("health: {enabled: false, path: /x}\n")).health.enabled);
    {
      const Config c =
          load_ok(with("health:\n"
                       "  enabled: true\n"
                       "  method: HEAD\n"
                       "  path: /health?probe=1\n"
                       "  expect_status: 204\n"
                       "  interval: 5s\n"
                       "  timeout: 5s\n"
                       "  rise: 1\n"
                       "  fall: 100\n"
                       "  slow_start: 30s\n"
                       "  passive_fall: 0\n"));
      const HealthCheckConfig& h = c.health;
      CHECK(h.enabled);
      CHECK(h.method == "HEAD");
      CHECK(h.path == "/health?probe=1");
      CHECK(h.expect_status == 204);
      CHECK(h.interval == 5000ms);
      CHECK(h.timeout == 5000ms);
      CHECK(h.rise == 1);
      CHECK(h.fall == 100);
      CHECK(h.slow_start == 30000ms);
      CHECK(h.passive_fall == 0);
    }
    CHECK(load_ok(with("health: {method: options}\n")).health.method == "OPTIONS");
    CHECK(load_ok(with("health: {expect_status: 0}\n")).health.expect_status == 0);
    CHECK(load_ok(with("health: {expect_status: 100}\n")).health.expect_status == 100);
    CHECK(load_ok(with("health: {expect_status: 599}\n")).health.expect_status == 599);
    CHECK(load_ok(with("health: {slow_start: 0}\n")).health.slow_start == 0ms);
    CHECK(load_ok(with("health: {passive_fall: 100}\n")).health.passive_fall == 100);
    CHECK(load_ok(with("health: {evict_over: 0}\n")).health.evict_over == 0ms);
    CHECK(load_ok(with("health: {evict_over: 2m}\n")).health.evict_over == 120000ms);
    // Lowering the interval and timeout together keeps them consistent.
    CHECK(load_ok(with("health: {interval: 500ms, timeout: 200ms}\n")).health.interval == 500ms);
  }

  TEST_CASE("health errors") {
    expect_one_error(with("health: [1]\n"), 4, 9, "expected true, false or a map");
    expect_one_error(with("health:\n"), 4, 1, "expected true, false or a map");
    expect_one_error(with("health:\n  enabled: on\n"), 5, 12, "expected a boolean");
    expect_one_error(with("health:\n  method: POST\n"), 5, 11,
                     "invalid health check method 'POST' (expected GET, HEAD or OPTIONS)");
    expect_one_error(with("health:\n  path: health\n"), 5, 9, "must start with '/'");
    expect_one_error(with("health:\n  path: \"\"\n"), 5, 9, "must start with '/'");
    expect_one_error(with("health:\n  path: \"/a b\"\n"), 5, 9, "must not contain");
    expect_one_error(with("health:\n  path: \"/a#b\"\n"), 5, 9, "must not contain");
    expect_one_error(with("health:\n  expect_status: 600\n"), 5, 18, "between 100 and 599, or 0");
    expect_one_error(with("health:\n  expect_status: 99\n"), 5, 18, "between 100 and 599");
    expect_one_error(with("health:\n  expect_status: ok\n"), 5, 18, "between 100 and 599");
    expect_one_error(with("health:\n  interval: 0\n"), 5, 13, "greater than 0");
    expect_one_error(with("health:\n  timeout: never\n"), 5, 12, "invalid duration 'never'");
    expect_one_error(with("health:\n  interval: 1s\n  timeout: 2s\n"), 6, 12,
                     "health check timeout (2000ms) must not exceed interval (1000ms)");
    expect_one_error(with("health:\n  timeout: 2s\n  interval: 1s\n"), 5, 12, "must not exceed");
    // Only one side given: the other's default is what it conflicts with.
    expect_one_error(with("health:\n  interval: 500ms\n"), 5, 13,
                     "timeout (1000ms) must not exceed interval (500ms)");
    expect_one_error(with("health:\n  timeout: 3s\n"), 5, 12,
                     "timeout (3000ms) must not exceed interval (2000ms)");
    expect_one_error(with("health:\n  rise: 0\n"), 5, 9, "between 1 and 100");
    expect_one_error(with("health:\n  fall: 101\n"), 5, 9, "between 1 and 100");
    expect_one_error(with("health:\n  passive_fall: -1\n"), 5, 17, "between 0 and 100");
    expect_one_error(with("health:\n  slow_start: -1s\n"), 5, 15, "invalid duration");
    expect_one_error(with("health:\n  port: 80\n"), 5, 3, "unknown key 'port'");
  }

  TEST_CASE("admin") {
    {
      const Config c = load_ok(with("admin: {}\n"));
      CHECK(c.admin.enabled);
      CHECK(c.admin.listen.text == "127.0.0.1:9901");
      CHECK(c.admin.listen.port() == 9901);
      CHECK(c.admin.token.empty());
    }
    CHECK(load_ok(with("admin: true\n")).admin.enabled);
    CHECK_FALSE(load_ok(with("admin: false\n")).admin.enabled);
    {
      const Config c = load_ok(with("admin:\n  listen: \"[::1]:0\"\n  token: \"s3cr3t-t0ken!-long\"\n"));
      CHECK(c.admin.enabled);
      CHECK(c.admin.listen.port() == 0);
      CHECK(ip_of(c.admin.listen) == "::1");
      CHECK(c.admin.token == "s3cr3t-t0ken!-long");
    }
    CHECK(load_ok(with("admin: {token: \"1234567890123456\"}\n")).admin.token == "1234567890123456");
    // Off loopback, a token is required (and what is reachable from other hosts is exposed).
    CHECK(load_ok(with("admin: {listen: \"0.0.0.0:9901\", token: \"1234567890123456\"}\n")).admin.enabled);
    CHECK(load_ok(with("admin: {listen: \"127.0.0.2:9901\"}\n")).admin.enabled);
    CHECK(load_ok(with("admin: {listen: \"[::1]:9901\"}\n")).admin.enabled);
    expect_one_error(with("admin:\n  listen: 0.0.0.0:9901\n"), 5, 11,
                     "admin.listen '0.0.0.0:9901' is not a loopback address: set admin.token (16 characters or more)");
    expect_one_error(with("admin:\n  listen: \"[::]:9901\"\n"), 5, 11, "is not a loopback address");
    expect_one_error(with("admin:\n  listen: 10.0.0.1:9901\n  token: short\n"), 6, 10, "at least 16 characters");
    expect_one_error(with("admin: yes\n"), 4, 8, "expected true, false or a map");
    expect_one_error(with("admin:\n  listen: 127.0.0.1\n"), 5, 11, "missing port");
    expect_one_error(with("admin:\n  listen: [a]\n"), 5, 11, "expected a string");
    expect_one_error(with("admin:\n  token: short\n"), 5, 10, "at least 16 characters");
    expect_one_error(with("admin:\n  token: \"123456789012345\"\n"), 5, 10, "at least 16 characters");
    expect_one_error(with("admin:\n  token: \"\"\n"), 5, 10, "at least 16 characters");
    expect_one_error(with("admin:\n  token: \"has a space\"\n"), 5, 10, "visible ASCII");
    expect_one_error(with("admin:\n  token: \"tab\\there!!-long-enough\"\n"), 5, 10, "visible ASCII");
    expect_one_error(with("admin:\n  token: [a]\n"), 5, 10, "expected a string");
    expect_one_error(with("admin:\n  user: x\n"), 5, 3, "unknown key 'user'");
  }

  TEST_CASE("admin request_timeout and max_connections_per_ip") {
    {
      const Config c = load_ok(with("admin:\n  request_timeout: 300ms\n"
                                    "  max_connections_per_ip: 2\n"));
      CHECK(c.admin.enabled);
      CHECK(c.admin.request_timeout == 300ms);
      CHECK(c.admin.max_connections_per_ip == 2);
    }
    {
      const Config c = load_ok(with("admin: {request_timeout: 30s, max_connections_per_ip: 64}\n"));
      CHECK(c.admin.request_timeout == 30000ms);
      CHECK(c.admin.max_connections_per_ip == 64);
    }
    CHECK(load_ok(with("admin: {max_connections_per_ip: 1}\n")).admin.max_connections_per_ip == 1);
    CHECK(load_ok(with("admin: {max_connections_per_ip: 1}\n")).admin.request_timeout == 5000ms);
    struct Bad {
      std::string key, value;
      const char* error;
    };
    for (const Bad& b : {
             Bad{"request_timeout", "0s", "greater than 0"},
             Bad{"request_timeout", "-1s", "invalid duration '-1s'"},
             Bad{"request_timeout", "soon", "invalid duration 'soon'"},
             Bad{"request_timeout", "[5s]", "expected a duration"},
             Bad{"request_timeout", "31s",
                 "admin request_timeout must not exceed 30000ms (the admin idle timeout)"},
             Bad{"max_connections_per_ip", "0", "between 1 and 64"},
             Bad{"max_connections_per_ip", "65", "between 1 and 64"},
             Bad{"max_connections_per_ip", "many", "expected an integer"},
         }) {
      // The value's column: after "  <key>: ".
      const int col = 2 + static_cast<int>(b.key.size()) + 3;
      expect_one_error(with("admin:\n  " + b.key + ": " + b.value + "\n"), 5, col, b.error);
    }
    // Both wrong: both reported, each at its value.
    const ConfigResult r =
        load(with("admin:\n  request_timeout: 1m\n  max_connections_per_ip: -1\n"));
    INFO(all_errors(r));
    CHECK_FALSE(r.config);
    REQUIRE(r.errors.size() == 2);
    CHECK(r.errors[0].to_string() ==
          "t.yaml:5:20: admin request_timeout must not exceed 30000ms (the admin idle timeout)");
    CHECK(r.errors[1].to_string() == "t.yaml:6:27: expected an integer between 1 and 64");
  }

  TEST_CASE("headers") {
    {
      const Config c =
          load_ok(with("headers:\n"
                       "  handshake: {X-Foo: bar, X-Num: 5}\n"
                       "  all:\n"
                       "    Set-Cookie: [\"a=b; Path=/\", \"c=d\"]\n"
                       "    X-Tab: \"a\\tb \"\n"
                       "    X-Empty: \"\"\n"));
      REQUIRE(c.headers.handshake.size() == 2);
      CHECK(c.headers.handshake[0].name == "X-Foo");
      CHECK(c.headers.handshake[0].value == "bar");
      CHECK(c.headers.handshake[1].name == "X-Num");
      CHECK(c.headers.handshake[1].value == "5");
      REQUIRE(c.headers.all.size() == 4);
      CHECK(c.headers.all[0].name == "Set-Cookie");
      CHECK(c.headers.all[0].value == "a=b; Path=/");
      CHECK(c.headers.all[1].name == "Set-Cookie");
      CHECK(c.headers.all[1].value == "c=d");
      CHECK(c.headers.all[2].value == "a\tb ");
      CHECK(c.headers.all[3].name == "X-Empty");
      CHECK(c.headers.all[3].value.empty());
    }
    CHECK(load_ok(with("headers: {}\n")).headers.all.empty());
    // The same name in both lists is allowed (handshakes get both).
    CHECK(load_ok(with("headers: {handshake: {X-A: 1}, all: {X-A: 2}}\n")).headers.all.size() == 1);
  }

  TEST_CASE("headers errors") {
    const std::string all = with("headers:\n  all:\n");  // entries on line 6
    expect_one_error(with("headers: 1\n"), 4, 10, "expected a map");
    expect_one_error(with("headers:\n  other: {}\n"), 5, 3, "unknown key 'other'");
    expect_one_error(with("headers:\n  handshake: [a]\n"), 5, 14, "expected a map of header names");
    expect_one_error(with("headers:\n  all:\n"), 5, 3, "expected a map of header names");
    expect_one_error(all + "    \"X Foo\": bar\n", 6, 5, "invalid header name 'X Foo'");
    expect_one_error(all + "    \"X:Foo\": bar\n", 6, 5, "invalid header name");
    expect_one_error(all + "    Content-Length: 5\n", 6, 5,
                     "header 'Content-Length' is managed by the proxy");
    expect_one_error(all + "    transfer-encoding: chunked\n", 6, 5, "managed by the proxy");
    expect_one_error(all + "    Connection: close\n", 6, 5, "managed by the proxy");
    expect_one_error(all + "    X-A: a\n    x-a: b\n", 7, 5,
                     "duplicate header 'x-a' (first at line 6");
    expect_one_error(all + "    X-A: \"a\\r\\nInjected: 1\"\n", 6, 10,
                     "invalid value for header 'X-A'");
    expect_one_error(all + "    X-A: \"a\\nb\"\n", 6, 10, "no CR, LF or NUL");
    expect_one_error(all + "    X-A: \"a\\0b\"\n", 6, 10, "no CR, LF or NUL");
    expect_one_error(all + "    X-A: \"caf\\u00e9\"\n", 6, 10, "only visible ASCII");
    expect_one_error(all + "    X-A:\n", 6, 5, "expected a string or a non-empty list");
    expect_one_error(all + "    X-A: []\n", 6, 10, "non-empty list");
    expect_one_error(all + "    X-A: {b: c}\n", 6, 10, "non-empty list");
    expect_one_error(all + "    X-A: [a, {b: c}]\n", 6, 14, "expected a string");
    expect_one_error(all + "    ? [a]\n    : b\n", 6, 7, "expected a string key");
  }

  TEST_CASE("a config using every key at once loads") {
    const std::string yaml = std::string(
                                 "listen: [127.0.0.1:8080]\n"
                                 "balance: least_conn\n"
                                 "backends:\n"
                                 "  - name: n1\n"
                                 "    address: 127.0.0.1:3001\n"
                                 "    weight: 2\n"
                                 "    cookie: a1\n"
                                 "    cookie_aliases: [old1, old2]\n"
                                 "  - name: n2\n"
                                 "    address: 127.0.0.1:3002\n"
                                 "    cookie_aliases: legacy2\n"
                                 "path: /socket.io\n"
                                 "cookie:\n"
                                 "  name: io\n"
                                 "  sameSite: none\n"
                                 "  secure: true\n"
                                 "sticky:\n"
                                 "  secret: \"") +
                             kSecret +
                             "\"\n"
                             "  on_down: strict\n"
                             "  server_cookie:\n"
                             "    name: SERVERID\n"
                             "    mode: insert\n"
                             "    indirect: true\n"
                             "    nocache: true\n"
                             "    preserve: false\n"
                             "    httponly: true\n"
                             "    secure: true\n"
                             "    domain: .example.com\n"
                             "    maxidle: 30m\n"
                             "    maxlife: 8h\n"
                             "  tag_sids:\n"
                             "    enabled: true\n"
                             "    separator: \"~\"\n"
                             "    accept_backend_tags: true\n"
                             "health:\n"
                             "  enabled: true\n"
                             "  method: GET\n"
                             "  path: /health\n"
                             "  expect_status: 200\n"
                             "  interval: 2s\n"
                             "  timeout: 1s\n"
                             "  rise: 2\n"
                             "  fall: 3\n"
                             "  slow_start: 10s\n"
                             "  passive_fall: 3\n"
                             "admin:\n"
                             "  listen: 127.0.0.1:9902\n"
                             "  token: \"0123456789abcdef\"\n"
                             "  request_timeout: 2s\n"
                             "  max_connections_per_ip: 4\n"
                             "access_log: {format: json}\n"
                             "headers:\n"
                             "  handshake: {X-Foo: bar}\n"
                             "  all: {Set-Cookie: \"a=b\"}\n"
                             "timeouts:\n"
                             "  connect: 1s\n"
                             "  client: 30s\n"
                             "  server: 30s\n"
                             "  tunnel: 1h\n"
                             "  backend_keepalive: 3s\n"
                             "  shutdown_grace: 15s\n"
                             "affinity:\n"
                             "  max_sessions: 100\n"
                             "  idle_timeout: auto\n"
                             "  fallback_idle: 2m\n"
                             "limits:\n"
                             "  max_header_size: 16k\n"
                             "  max_url_length: 4k\n"
                             "  max_handshake_body: 8k\n"
                             "log:\n"
                             "  level: warn\n";
    const Config c = load_ok(yaml);
    CHECK(c.balance == BalancePolicy::LeastConn);
    REQUIRE(c.backends.size() == 2);
    CHECK(c.backends[0].cookie == "a1");
    CHECK(c.backends[0].cookie_aliases == std::vector<std::string>{"old1", "old2"});
    CHECK(c.backends[1].cookie == kDerivedN2);
    CHECK(c.backends[1].cookie_aliases == std::vector<std::string>{"legacy2"});
    CHECK(c.sticky.secret == kSecret);
    CHECK(c.sticky.strict);
    CHECK(c.sticky.server_cookie.enabled);
    CHECK(c.sticky.server_cookie.indirect);
    CHECK(c.sticky.server_cookie.domains == std::vector<std::string>{".example.com"});
    CHECK(c.sticky.server_cookie.maxidle == std::optional<Millis>(1800000ms));
    CHECK(c.sticky.tag.enabled);
    CHECK(c.sticky.tag.accept_backend_tags);
    CHECK(c.sticky.tag.separator == "~");
    CHECK(c.health.enabled);
    CHECK(c.health.path == "/health");
    CHECK(c.health.slow_start == 10000ms);
    CHECK(c.admin.enabled);
    CHECK(c.admin.listen.port() == 9902);
    CHECK(c.admin.token == "0123456789abcdef");
    CHECK(c.admin.request_timeout == 2000ms);
    CHECK(c.admin.max_connections_per_ip == 4);
    CHECK(c.access_log);
    CHECK(c.access_log_json);
    REQUIRE(c.headers.handshake.size() == 1);
    REQUIRE(c.headers.all.size() == 1);
    CHECK(c.headers.all[0].name == "Set-Cookie");
    CHECK(c.shutdown_grace == 15000ms);
    CHECK(c.timeouts.tunnel == 3600000ms);
    CHECK(c.log_level == LogLevel::Warn);
  }

  TEST_CASE("new-section errors are collected with the rest, in document order") {
    const std::string yaml =
        "listen: 127.0.0.1:8080\n"         // 1
        "backends:\n"                      // 2
        "  - name: n1\n"                   // 3
        "    address: 127.0.0.1:1\n"       // 4
        "    cookie: \"a.b\"\n"            // 5: separator in a tagged value
        "  - name: n2\n"                   // 6
        "    address: 127.0.0.1:2\n"       // 7
        "    cookie_aliases: [a.b]\n"      // 8: same separator problem (not a duplicate)
        "balance: nope\n"                  // 9
        "sticky:\n"                        // 10
        "  tag_sids: true\n"               // 11
        "  server_cookie: {name: io}\n"    // 12: collides with cookie.name
        "health:\n"                        // 13
        "  interval: 100ms\n"              // 14: below the default timeout
        "admin: {token: short}\n"          // 15
        "headers: {all: {Upgrade: x}}\n";  // 16
    const ConfigResult r = load(yaml);
    INFO(all_errors(r));
    CHECK_FALSE(r.config);
    REQUIRE(r.errors.size() == 7);
    const int lines[] = {5, 8, 9, 12, 14, 15, 16};
    for (size_t i = 0; i < 7; ++i) CHECK(r.errors[i].line == lines[i]);
    CHECK(r.errors[0].to_string() ==
          "t.yaml:5:13: cookie value 'a.b' contains the sid tag separator '.'");
    CHECK(r.errors[1].to_string() ==
          "t.yaml:8:22: cookie value 'a.b' contains the sid tag separator '.'");
  }
}

TEST_SUITE("config parsers") {
  TEST_CASE("derive_cookie_value") {
    // Known vectors: HMAC-SHA256(key, name), first 12 bytes, base64url without padding.
    CHECK(derive_cookie_value(kSecret, "n1") == kDerivedN1);
    CHECK(derive_cookie_value(kSecret, "n2") == kDerivedN2);
    CHECK(derive_cookie_value("another-secret-of-16b", "n1") == "FtYbXqzg-d3FsWcc");
    // Deterministic, 16 characters of the base64url alphabet, differs per name and secret.
    const std::string a = derive_cookie_value(kSecret, "node-1");
    CHECK(a == derive_cookie_value(kSecret, "node-1"));
    CHECK(a.size() == 16);
    CHECK(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          std::string::npos);
    CHECK(a != derive_cookie_value(kSecret, "node-2"));
    CHECK(a != derive_cookie_value(std::string(kSecret) + "x", "node-1"));
    for (int i = 0; i < 50; ++i) {
      const std::string v = derive_cookie_value(kSecret, "backend-" + std::to_string(i));
      CHECK(v.size() == 16);
      CHECK(
          v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          std::string::npos);
    }
    CHECK(derive_cookie_value("", "n1").size() == 16);
  }
}

// ---- TLS ------------------------------------------------------------------------------------

namespace stickyd_test {
// Directory of test certificates made by test_tls.cpp ("" if they could not be made):
// ca.pem, a.pem/a.key (a.test), b.pem/b.key (b.test), client.pem/.key, expired.pem (key
// a.key), other.key (matches nothing), junk.txt (not PEM).
std::string tls_test_dir();
}  // namespace stickyd_test

namespace {

std::string tls_dir() {
  const std::string d = stickyd_test::tls_test_dir();
  REQUIRE_FALSE(d.empty());
  return d;
}

// Loaded as if from <tls dir>/stickyd.yaml, so relative file names are the test certificates.
ConfigResult load_tls(const std::string& yaml) {
  return load_config_string(yaml, tls_dir() + "/stickyd.yaml");
}

Config load_tls_ok(const std::string& yaml) {
  const ConfigResult r = load_tls(yaml);
  INFO("yaml:\n" << yaml << "errors:\n" << all_errors(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.config.has_value());
  return *r.config;
}

void expect_tls_error(const std::string& yaml, int line, int col, const std::string& frag) {
  const ConfigResult r = load_tls(yaml);
  INFO("yaml:\n" << yaml << "errors:\n" << all_errors(r));
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].file == tls_dir() + "/stickyd.yaml");
  CHECK(r.errors[0].line == line);
  CHECK(r.errors[0].column == col);
  CHECK(r.errors[0].message.find(frag) != std::string::npos);
}

// A document whose listener's `tls:` map starts on line 4 (its keys at column 7).
std::string tls_listener(const std::string& tls_body) {
  return "listen:\n"
         "  - address: 127.0.0.1:8443\n"
         "    tls:\n" +
         tls_body + "backends:\n  - {name: n1, address: 127.0.0.1:3001}\n";
}

// A document whose backend's `tls:` starts on line 5, column 5.
std::string tls_backend(const std::string& tls_value) {
  return "listen: 127.0.0.1:8080\n"
         "backends:\n"
         "  - name: n1\n"
         "    address: 127.0.0.1:3443\n"
         "    tls: " +
         tls_value + "\n";
}

}  // namespace

TEST_SUITE("config: tls") {
  TEST_CASE("listener tls: shorthand cert/key and every option") {
    const std::string d = tls_dir();
    const Config c = load_tls(
                         "listen:\n"
                         "  - 127.0.0.1:8080\n"
                         "  - address: 127.0.0.1:8443\n"
                         "    tls:\n"
                         "      cert: a.pem\n"
                         "      key: ./sub/../a.key\n"
                         "      min_version: 1.3\n"
                         "      ciphers: \"ECDHE+AESGCM:!aNULL\"\n"
                         "      ciphersuites: \"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384\"\n"
                         "      session_tickets: false\n"
                         "      ticket_key_rotation: 6h\n"
                         "      handshake_timeout: 2500ms\n"
                         "      secure_cookies: false\n"
                         "backends:\n"
                         "  - {name: n1, address: 127.0.0.1:3001}\n")
                         .config.value();
    REQUIRE(c.listen.size() == 2);
    CHECK(c.listen[0].text() == "127.0.0.1:8080");
    CHECK_FALSE(c.listen[0].tls);
    CHECK(c.listen[1].text() == "127.0.0.1:8443");
    CHECK(c.listen[1].address.port() == 8443);
    REQUIRE(c.listen[1].tls);
    const TlsServerConfig& t = *c.listen[1].tls;
    REQUIRE(t.certificates.size() == 1);
    CHECK(t.certificates[0].cert_file == d + "/a.pem");
    CHECK(t.certificates[0].key_file == d + "/a.key");  // resolved and normalised
    CHECK(t.certificates[0].line == 5);
    CHECK(t.certificates[0].column == 13);
    CHECK(t.min_version == "1.3");
    CHECK(t.ciphers == "ECDHE+AESGCM:!aNULL");
    CHECK(t.ciphersuites == "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384");
    CHECK_FALSE(t.session_tickets);
    CHECK(t.ticket_key_rotation == 6h);
    CHECK(t.handshake_timeout == 2500ms);
    CHECK_FALSE(t.secure_cookies);
  }

  TEST_CASE("listener tls: defaults, a single map, a certificate list, absolute paths") {
    const std::string d = tls_dir();
    Config c = load_tls_ok(
        "listen: {address: 127.0.0.1:8443, tls: {cert: a.pem, key: a.key}}\n"
        "backends:\n  - {name: n1, address: 127.0.0.1:3001}\n");
    REQUIRE(c.listen.size() == 1);
    REQUIRE(c.listen[0].tls);
    const TlsServerConfig& t = *c.listen[0].tls;
    CHECK(t.min_version == "1.2");
    CHECK(t.ciphers.empty());
    CHECK(t.ciphersuites.empty());
    CHECK(t.session_tickets);
    CHECK(t.ticket_key_rotation == 12h);
    CHECK(t.handshake_timeout == 10s);
    CHECK(t.secure_cookies);

    c = load_tls_ok(tls_listener("      min_version: \"1.2\"\n"
                                 "      certificates:\n"
                                 "        - {cert: a.pem, key: a.key}\n"
                                 "        - cert: " + d + "/b.pem\n"
                                 "          key: b.key\n"));
    const TlsServerConfig& l = *c.listen.at(0).tls;
    REQUIRE(l.certificates.size() == 2);
    CHECK(l.min_version == "1.2");
    CHECK(l.certificates[0].cert_file == d + "/a.pem");
    CHECK(l.certificates[0].line == 6);
    CHECK(l.certificates[0].column == 11);
    CHECK(l.certificates[1].cert_file == d + "/b.pem");
    CHECK(l.certificates[1].key_file == d + "/b.key");
    CHECK(l.certificates[1].line == 7);
    CHECK(l.certificates[1].column == 11);

    c = load_tls_ok(tls_listener("      {cert: a.pem, key: a.key, min_version: TLSv1.3}\n"));
    CHECK(c.listen[0].tls->min_version == "1.3");
  }

  TEST_CASE("relative paths: against the config file's directory, else the working directory") {
    const std::string d = tls_dir();
    // load_config_file: relative to the file.
    const std::string path = d + "/from-file.yaml";
    {
      std::ofstream out(path);
      out << tls_listener("      cert: a.pem\n      key: a.key\n");
    }
    ConfigResult r = load_config_file(path);
    INFO(all_errors(r));
    REQUIRE(r.config);
    CHECK(r.config->listen[0].tls->certificates[0].cert_file == d + "/a.pem");
    std::remove(path.c_str());
    // A name without a directory: the working directory.
    char cwd[4096];
    REQUIRE(getcwd(cwd, sizeof cwd) != nullptr);
    r = load(tls_listener("      cert: stickyd-no-such.pem\n      key: a.key\n"));
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == "t.yaml:4:13: certificate file '" + std::string(cwd) +
                                         "/stickyd-no-such.pem': No such file or directory");
  }

  TEST_CASE("listener tls: file problems at the cert or key node, with OpenSSL's reason") {
    const std::string d = tls_dir();
    const std::string file = d + "/stickyd.yaml";
    ConfigResult r = load_tls(tls_listener("      cert: missing.pem\n      key: a.key\n"));
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == file + ":4:13: certificate file '" + d +
                                         "/missing.pem': No such file or directory");
    expect_tls_error(tls_listener("      cert: a.pem\n      key: missing.key\n"), 5, 12,
                     "private key file '" + d + "/missing.key': No such file or directory");
    expect_tls_error(tls_listener("      cert: a.pem\n      key: other.key\n"), 5, 12,
                     "private key file '" + d + "/other.key': key does not match certificate '" +
                         d + "/a.pem' (key values mismatch)");
    expect_tls_error(tls_listener("      cert: expired.pem\n      key: a.key\n"), 4, 13,
                     "certificate file '" + d +
                         "/expired.pem': certificate expired on 2020-01-02 00:00:00 UTC");
    expect_tls_error(tls_listener("      cert: junk.txt\n      key: a.key\n"), 4, 13,
                     "no PEM certificate found (no start line)");
    expect_tls_error(tls_listener("      cert: a.pem\n      key: a.pem\n"), 5, 12,
                     "no PEM private key found");
    // Every bad entry of a list is reported, each at its own node.
    r = load_tls(tls_listener("      certificates:\n"
                              "        - {cert: a.pem, key: a.key}\n"
                              "        - {cert: b.pem, key: a.key}\n"
                              "        - {cert: nope.pem, key: b.key}\n"));
    INFO(all_errors(r));
    REQUIRE(r.errors.size() == 2);
    CHECK(r.errors[0].line == 6);
    CHECK(r.errors[0].column == 30);
    CHECK(r.errors[0].message.find("key does not match certificate") != std::string::npos);
    CHECK(r.errors[1].line == 7);
    CHECK(r.errors[1].column == 18);
    CHECK(r.errors[1].message.find("No such file or directory") != std::string::npos);
  }

  TEST_CASE("listener tls: option errors") {
    const std::string pair = "      cert: a.pem\n      key: a.key\n";
    expect_tls_error(tls_listener(pair + "      min_version: 1.1\n"), 6, 20,
                     "TLS 1.0/1.1 are insecure and not supported");
    expect_tls_error(tls_listener(pair + "      min_version: \"1.0\"\n"), 6, 20,
                     "TLS 1.0/1.1 are insecure and not supported");
    expect_tls_error(tls_listener(pair + "      min_version: 1.4\n"), 6, 20,
                     "invalid min_version '1.4' (expected \"1.2\" or \"1.3\")");
    expect_tls_error(tls_listener(pair + "      min_version: [1.2]\n"), 6, 20, "expected \"1.2\"");
    expect_tls_error(tls_listener(pair + "      ciphers: \"RC4-NOPE:BOGUS\"\n"), 6, 16,
                     "no valid cipher in 'RC4-NOPE:BOGUS' (no cipher match)");
    expect_tls_error(tls_listener(pair + "      ciphers: \"\"\n"), 6, 16, "must not be empty");
    expect_tls_error(tls_listener(pair + "      ciphersuites: TLS_AES_128_GCM_SHA256:TLS_X\n"), 6,
                     21, "unknown TLS 1.3 ciphersuite 'TLS_X'");
    expect_tls_error(tls_listener(pair + "      session_tickets: yes please\n"), 6, 24,
                     "expected a boolean");
    expect_tls_error(tls_listener(pair + "      secure_cookies: 1\n"), 6, 23, "expected a boolean");
    expect_tls_error(tls_listener(pair + "      ticket_key_rotation: 0s\n"), 6, 28,
                     "greater than 0");
    expect_tls_error(tls_listener(pair + "      handshake_timeout: soon\n"), 6, 26,
                     "invalid duration 'soon'");
    expect_tls_error(tls_listener(pair + "      client_ca: ca.pem\n"), 6, 7,
                     "unknown key 'client_ca'");
    expect_tls_error(tls_listener(pair + "      cert: b.pem\n"), 6, 7, "duplicate key 'cert'");
  }

  TEST_CASE("listener tls: structure errors") {
    expect_tls_error(tls_listener("      cert: a.pem\n      key: a.key\n"
                                  "      certificates:\n        - {cert: b.pem, key: b.key}\n"),
                     6, 7, "use either cert and key or certificates, not both");
    expect_tls_error(tls_listener("      cert: a.pem\n"), 4, 7, "'cert' without 'key'");
    expect_tls_error(tls_listener("      key: a.key\n"), 4, 7, "'key' without 'cert'");
    expect_tls_error(tls_listener("      min_version: 1.2\n"), 4, 7,
                     "tls needs a certificate: cert and key, or certificates");
    expect_tls_error(tls_listener("      certificates: []\n"), 4, 21,
                     "expected a non-empty list of {cert, key}");
    expect_tls_error(tls_listener("      certificates:\n        - {cert: a.pem}\n"), 5, 12,
                     "'cert' without 'key'");
    expect_tls_error(tls_listener("      certificates:\n        - a.pem\n"), 5, 11,
                     "expected a map");
    expect_tls_error(tls_listener("      certificates:\n        - {}\n"), 5, 11,
                     "certificate entry needs 'cert' and 'key'");
    expect_tls_error(tls_listener("      certificates:\n        - {cert: a.pem, key: a.key, "
                                  "sni: a.test}\n"),
                     5, 37, "unknown key 'sni'");
    expect_tls_error("listen:\n  - address: 127.0.0.1:8443\n    tls: true\n"
                     "backends:\n  - {name: n1, address: 127.0.0.1:3001}\n",
                     3, 10, "expected a map");
    expect_tls_error("listen:\n  - address: 127.0.0.1:8443\n    tls: {cert: a.pem, key: a.key}\n"
                     "    port: 3\n"
                     "backends:\n  - {name: n1, address: 127.0.0.1:3001}\n",
                     4, 5, "unknown key 'port'");
    expect_tls_error("listen:\n  - tls: {cert: a.pem, key: a.key}\n"
                     "backends:\n  - {name: n1, address: 127.0.0.1:3001}\n",
                     2, 5, "listen entry is missing required key 'address'");
  }

  TEST_CASE("backend tls: true, false, or a map") {
    const std::string d = tls_dir();
    Config c = load_tls_ok(tls_backend("true"));
    const TlsClientConfig& t = c.backends.at(0).tls;
    CHECK(t.enabled);
    CHECK(t.verify);
    CHECK(t.ca_file.empty());
    CHECK(t.sni.empty());
    CHECK(t.cert_file.empty());
    CHECK(t.line == 5);
    CHECK(t.column == 5);
    c = load_tls_ok(tls_backend("false"));
    CHECK_FALSE(c.backends[0].tls.enabled);
    c = load_tls_ok(kMinimal);
    CHECK_FALSE(c.backends[0].tls.enabled);
    c = load_tls_ok(
        tls_backend("{ca: ca.pem, verify: false, sni: node1.test, cert: client.pem, "
                    "key: client.key}"));
    const TlsClientConfig& m = c.backends[0].tls;
    CHECK(m.enabled);
    CHECK(m.ca_file == d + "/ca.pem");
    CHECK_FALSE(m.verify);
    CHECK(m.sni == "node1.test");
    CHECK(m.cert_file == d + "/client.pem");
    CHECK(m.key_file == d + "/client.key");
    c = load_tls_ok(tls_backend("{}"));
    CHECK(c.backends[0].tls.enabled);
    CHECK(c.backends[0].tls.verify);
  }

  TEST_CASE("backend tls errors") {
    const std::string d = tls_dir();
    expect_tls_error(tls_backend("{ca: missing.pem}"), 5, 15,
                     "CA file '" + d + "/missing.pem': No such file or directory");
    expect_tls_error(tls_backend("{ca: junk.txt}"), 5, 15, "no PEM certificate found");
    expect_tls_error(tls_backend("{cert: client.pem, key: other.key}"), 5, 34,
                     "key does not match certificate");
    expect_tls_error(tls_backend("{cert: expired.pem, key: a.key}"), 5, 17,
                     "certificate expired on 2020-01-02");
    expect_tls_error(tls_backend("{cert: client.pem}"), 5, 11, "'cert' without 'key'");
    expect_tls_error(tls_backend("{key: client.key}"), 5, 11, "'key' without 'cert'");
    expect_tls_error(tls_backend("{sni: 10.0.0.1}"), 5, 16, "invalid sni '10.0.0.1'");
    expect_tls_error(tls_backend("{sni: \"bad name\"}"), 5, 16, "invalid sni 'bad name'");
    expect_tls_error(tls_backend("{verify: maybe}"), 5, 19, "expected a boolean");
    expect_tls_error(tls_backend("{insecure: true}"), 5, 11, "unknown key 'insecure'");
    expect_tls_error(tls_backend("yes"), 5, 10, "expected true, false or a map");
  }

  TEST_CASE("sameSite none: secure: true, or every listener TLS with secure_cookies") {
    const std::string backends = "backends:\n  - {name: n1, address: 127.0.0.1:3001}\n";
    const std::string cookie = "cookie: {sameSite: none}\n";
    const std::string tls = "tls: {cert: a.pem, key: a.key}";
    // Every listener TLS, secure_cookies by default: allowed, Secure added per listener.
    Config c = load_tls_ok(cookie + "listen:\n  - {address: 127.0.0.1:8443, " + tls + "}\n" +
                           "  - {address: 127.0.0.1:9443, " + tls + "}\n" + backends);
    CHECK(c.cookie.same_site == SameSite::None);
    CHECK_FALSE(c.cookie.secure);
    // One plain listener: the error, at the sameSite value.
    expect_tls_error(cookie + "listen:\n  - {address: 127.0.0.1:8443, " + tls + "}\n" +
                         "  - 127.0.0.1:8080\n" + backends,
                     1, 20, "sameSite=None requires secure: true");
    // secure_cookies: false on one of them: the error too.
    expect_tls_error(cookie + "listen:\n  - {address: 127.0.0.1:8443, tls: {cert: a.pem, "
                              "key: a.key, secure_cookies: false}}\n" + backends,
                     1, 20, "or every listener on TLS with secure_cookies");
    // secure: true is enough on its own.
    c = load_tls_ok("cookie: {sameSite: none, secure: true}\nlisten: 127.0.0.1:8080\n" + backends);
    CHECK(c.cookie.secure);
    // A TLS listener that fails for another reason does not add the sameSite error.
    expect_tls_error(cookie + "listen: {address: 127.0.0.1:8443, tls: {cert: nope.pem, "
                              "key: a.key}}\n" + backends,
                     2, 47, "No such file or directory");
  }

  TEST_CASE("tls errors are collected with the rest, in document order") {
    const ConfigResult r = load_tls(
        "listen:\n"                                                  // 1
        "  - address: 127.0.0.1:8443\n"                              // 2
        "    tls:\n"                                                 // 3
        "      cert: expired.pem\n"                                  // 4: expired
        "      key: a.key\n"                                         // 5
        "      min_version: 1.1\n"                                   // 6: insecure
        "  - address: 127.0.0.1:9443\n"                              // 7
        "    tls: {cert: a.pem, key: other.key}\n"                   // 8: mismatch
        "backends:\n"                                                // 9
        "  - name: n1\n"                                             // 10
        "    address: 127.0.0.1:3001\n"                              // 11
        "    tls: {ca: nope.pem, sni: \"x y\"}\n"                    // 12: sni
        "  - name: n2\n"                                             // 13
        "    address: 127.0.0.1:3002\n"                              // 14
        "    tls: {ca: nope.pem}\n"                                  // 15: missing CA
        "timeouts: {connect: never}\n");                             // 16
    INFO(all_errors(r));
    CHECK_FALSE(r.config);
    REQUIRE(r.errors.size() == 7);
    const int lines[] = {4, 6, 8, 12, 12, 15, 16};
    for (size_t i = 0; i < 7; ++i) CHECK(r.errors[i].line == lines[i]);
    CHECK(r.errors[0].message.find("certificate expired on") != std::string::npos);
    CHECK(r.errors[1].message.find("insecure") != std::string::npos);
    CHECK(r.errors[2].message.find("key does not match") != std::string::npos);
    CHECK(r.errors[3].message.find("nope.pem': No such file") != std::string::npos);
    CHECK(r.errors[4].message.find("invalid sni") != std::string::npos);
    CHECK(r.errors[5].message.find("nope.pem': No such file") != std::string::npos);
  }
}

TEST_SUITE("config: top-level switches") {
  // tunnel_splice and batch_writes: booleans, true by default; an error points at the value.
  TEST_CASE("tunnel_splice and batch_writes: booleans, true by default") {
    struct Switch {
      std::string key;
      bool Config::*member;
    };
    for (const Switch& sw : {Switch{"tunnel_splice", &Config::tunnel_splice},
                             Switch{"batch_writes", &Config::batch_writes}}) {
      CAPTURE(sw.key);
      const int col = static_cast<int>(sw.key.size()) + 3;  // after "<key>: "
      CHECK(load(kMinimal).config.value().*sw.member);
      CHECK(load(with(sw.key + ": true\n")).config.value().*sw.member);
      CHECK_FALSE(load(with(sw.key + ": false\n")).config.value().*sw.member);
      expect_one_error(with(sw.key + ": yes\n"), 4, col, "expected a boolean");
      expect_one_error(with(sw.key + ": [true]\n"), 4, col, "expected a boolean");
    }
  }
}

TEST_SUITE("config: upgrade_protocols") {
  TEST_CASE("upgrade_protocols: websocket by default; tokens lowercased; errors point at the item") {
    CHECK(load(kMinimal).config.value().upgrade_protocols == std::vector<std::string>{"websocket"});
    CHECK(load(with("upgrade_protocols: [WebSocket, foo]\n")).config.value().upgrade_protocols ==
          std::vector<std::string>{"websocket", "foo"});
    CHECK(load(with("upgrade_protocols: []\n")).config.value().upgrade_protocols.empty());
    expect_one_error(with("upgrade_protocols: websocket\n"), 4, 20,
                     "expected a list of upgrade tokens");
    expect_one_error(with("upgrade_protocols: [websocket, \"h2c x\"]\n"), 4, 32,
                     "invalid upgrade token 'h2c x'");
  }
}

TEST_SUITE("config: discovery") {
  TEST_CASE("discover entries next to static backends, and resolvers") {
    Config c = load_ok(
        "listen: 127.0.0.1:8080\n"
        "resolvers: {nameservers: [\"127.0.0.1:5353\", 10.96.0.10, \"[::1]:53\"], interval: 2s, timeout: 300ms}\n"
        "backends:\n"
        "  - {name: n1, address: 127.0.0.1:3001}\n"
        "  - discover: {name: io.app.svc.cluster.local, type: A, port: 3000, weight: 2, max: 8, hold: 10s, evict_over: 0s}\n"
        "  - discover: {name: _http._tcp.io.app.svc.cluster.local, type: srv}\n");
    REQUIRE(c.backends.size() == 1);
    REQUIRE(c.discover.size() == 2);
    CHECK(c.discover[0].name == "io.app.svc.cluster.local");
    CHECK(c.discover[0].type == DiscoverType::A);
    CHECK(c.discover[0].port == 3000);
    CHECK(c.discover[0].weight == 2);
    CHECK(c.discover[0].max == 8);
    CHECK(c.discover[0].hold == Millis(10000));
    CHECK(c.discover[1].type == DiscoverType::SRV);
    CHECK(c.discover[1].port == 0);
    CHECK(c.discover[0].evict_over == Millis(0));
    CHECK(c.discover[1].hold == Millis(30000));  // defaults
    CHECK(c.discover[1].evict_over == Millis(20000));
    CHECK(c.discover[1].max == 64);
    CHECK(c.resolvers.nameservers ==
          std::vector<std::string>{"127.0.0.1:5353", "10.96.0.10:53", "[::1]:53"});
    CHECK(c.resolvers.interval == Millis(2000));
    CHECK(c.resolvers.timeout == Millis(300));
    // Only discover entries: valid (the set fills when DNS answers).
    Config only = load_ok("listen: 127.0.0.1:8080\nbackends:\n  - discover: {name: io, port: 3000}\n");
    CHECK(only.backends.empty());
    CHECK(only.discover.size() == 1);
    CHECK(only.resolvers.nameservers.empty());  // resolv.conf
    CHECK(only.resolvers.interval == Millis(5000));
  }

  TEST_CASE("discover and resolvers errors point at the value") {
    const std::string head = "listen: 127.0.0.1:8080\nbackends:\n";
    expect_one_error(head + "  - discover: {name: \"a b\", port: 1}\n", 3, 22, "invalid DNS name 'a b'");
    expect_one_error(head + "  - discover: {name: a, type: MX, port: 1}\n", 3, 31, "invalid record type 'MX'");
    expect_one_error(head + "  - discover: {name: _x._tcp.a, type: SRV, port: 1}\n", 3, 50,
                     "an SRV discover takes its ports from the records");
    expect_one_error(head + "  - discover: {name: a}\n", 3, 15, "missing required key 'port'");
    expect_one_error(head + "  - discover: {type: A, port: 1}\n", 3, 15, "missing required key 'name'");
    expect_one_error(head + "  - discover: {name: a, port: 70000}\n", 3, 31, "between 1 and 65535");
    expect_one_error(head + "  - discover: {name: a, port: 1, max: 0}\n", 3, 39, "between 1 and 1024");
    expect_one_error(head + "  - {discover: {name: a, port: 1}, weight: 3}\n", 3, 5, "options inside discover");
    expect_one_error(head + "  - discover: {name: a, port: 1, ttl: 3}\n", 3, 34, "unknown key 'ttl'");
    const std::string one = head + "  - discover: {name: a, port: 1}\n";
    expect_one_error(one + "resolvers: {nameservers: [dns.example]}\n", 4, 27, "invalid nameserver 'dns.example'");
    expect_one_error(one + "resolvers: {interval: 50ms}\n", 4, 23, "at least 100ms");
    expect_one_error(one + "resolvers: {nameservers: 10.0.0.1}\n", 4, 26, "expected a list");
  }
}
