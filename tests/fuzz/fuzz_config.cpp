// fuzz_config: load_config_string(yaml, "fuzz.yaml") must never crash, and reports every
// problem with a position (line/column >= 0) and a message. A config it accepts must be one the
// router can run with: every backend's persistence value routes back to it, sid tags and server
// cookies round-trip, the session cookie can be written.
//
// Determinism / no I/O:
//  * host names in addresses go through getaddrinfo(): this target defines its own, which never
//    touches the network or /etc (names ending in "invalid" fail, names starting with "v6"
//    resolve to ::1, everything else to 127.0.0.1). It overrides libc's (and the sanitizer
//    interceptor's weak one); LLVMFuzzerInitialize checks that it is really in use.
//  * inputs with a `ca`, `cert` or `key` map key anywhere (TLS files the loader would open) are
//    skipped, found with the same YAML parser the loader uses, so no quoting/flow/alias trick
//    gets one through.
#include <netdb.h>
#include <netinet/in.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "stickyd/config.hpp"
#include "stickyd/cookie.hpp"
#include "stickyd/log.hpp"
#include "stickyd/persistence.hpp"
#include "stickyd/router.hpp"

using namespace stickyd;

namespace {
int g_resolver_calls = 0;
}

FUZZ_DEFINE_CLOCK

extern "C" int getaddrinfo(const char* node, const char* /*service*/, const struct addrinfo* hints,
                           struct addrinfo** res) {
  ++g_resolver_calls;
  *res = nullptr;
  if (node == nullptr) return EAI_NONAME;
  const std::string_view name(node);
  const size_t n = name.size();
  if (n >= 7 && name.substr(n - 7) == "invalid") return EAI_NONAME;
  if (n >= 8 && name.substr(n - 8) == "invalid.") return EAI_NONAME;
  const bool v6 = name.substr(0, 2) == "v6";
  if (hints && hints->ai_family != AF_UNSPEC && hints->ai_family != (v6 ? AF_INET6 : AF_INET))
    return EAI_NONAME;
  auto* ai = static_cast<addrinfo*>(std::calloc(1, sizeof(addrinfo) + sizeof(sockaddr_in6)));
  if (ai == nullptr) return EAI_MEMORY;
  auto* sa = reinterpret_cast<sockaddr*>(ai + 1);
  ai->ai_socktype = SOCK_STREAM;
  ai->ai_addr = sa;
  if (v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(sa);
    s6->sin6_family = AF_INET6;
    s6->sin6_addr = in6addr_loopback;
    ai->ai_family = AF_INET6;
    ai->ai_addrlen = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(sa);
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ai->ai_family = AF_INET;
    ai->ai_addrlen = sizeof(sockaddr_in);
  }
  *res = ai;
  return 0;
}

extern "C" void freeaddrinfo(struct addrinfo* ai) {
  while (ai != nullptr) {
    addrinfo* next = ai->ai_next;
    std::free(ai);
    ai = next;
  }
}

namespace {

// True when some map anywhere has a key the loader would treat as a file path. `budget` bounds
// the walk (aliases can make a document exponentially large, or cyclic).
bool mentions_files(const YAML::Node& n, int depth, int& budget) {
  if (--budget < 0 || depth > 64) return true;  // too big to be sure: skip the input
  if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      const YAML::Node k = it->first;
      if (k.IsScalar()) {
        const std::string& s = k.Scalar();
        if (s == "ca" || s == "cert" || s == "key") return true;
      }
      if (mentions_files(k, depth + 1, budget) || mentions_files(it->second, depth + 1, budget))
        return true;
    }
  } else if (n.IsSequence()) {
    for (auto it = n.begin(); it != n.end(); ++it)
      if (mentions_files(*it, depth + 1, budget)) return true;
  }
  return false;
}

bool should_skip(const std::string& yaml) {
  try {
    YAML::Node root = YAML::Load(yaml);
    int budget = 20000;
    return mentions_files(root, 0, budget);
  } catch (...) {
    return false;  // the loader will fail to parse it too, before reading any file
  }
}

std::string value_of(const BackendConfig& b) { return b.cookie.empty() ? b.name : b.cookie; }

void check_accepted(const Config& cfg) {
  FUZZ_CHECK(!cfg.backends.empty());
  FUZZ_CHECK(!cfg.listen.empty());
  FUZZ_CHECK(!cfg.path.empty() && cfg.path.front() == '/' && cfg.path.back() == '/');
  const int n = static_cast<int>(cfg.backends.size());
  Router router(cfg);
  const Persistence& p = router.persistence();
  const int64_t now_ms = 5000;  // the loop's monotonic clock
  const int64_t now_s = fuzz::g_wall_clock_s;  // HAProxy cookie dates: wall clock
  const ServerCookieConfig& sc = cfg.sticky.server_cookie;

  for (int b = 0; b < n; ++b) {
    const std::string v = p.value_of(b);
    FUZZ_CHECK(v == value_of(cfg.backends[static_cast<size_t>(b)]));
    FUZZ_CHECK(!v.empty() && is_cookie_octets(v));
    FUZZ_CHECK(p.backend_for_value(v) == b);  // unique, so it names this backend
    for (const std::string& alias : cfg.backends[static_cast<size_t>(b)].cookie_aliases)
      FUZZ_CHECK(p.backend_for_value(alias) == b);
    if (p.any_tags()) {
      const std::string tagged = p.tag(b, "5_S2AZdCI1bklnExAAAk");
      auto t = p.parse_tag(tagged);
      FUZZ_CHECK(t && t->backend == b);
      FUZZ_CHECK(t->untagged == (p.proxy_tags() ? std::string_view("5_S2AZdCI1bklnExAAAk")
                                                : std::string_view(tagged)));
      if (cfg.cookie.inject) FUZZ_CHECK(serialize_set_cookie(cfg.cookie, tagged).has_value());
    }
    if (sc.enabled && sc.mode != ServerCookieMode::Prefix) {
      const std::string raw = p.server_cookie_value(b, now_s, 0);
      FUZZ_CHECK(is_cookie_octets(raw));
      Persistence::ServerCookie c = p.parse_server_cookie(raw, now_s);
      FUZZ_CHECK(c.backend == b && !c.expired);
      const std::string set = p.insert_set_cookie(b, now_s, 0);
      FUZZ_CHECK(set.find_first_of("\r\n") == std::string::npos);
      // A client sending it back is routed to `b`.
      Route r = router.route("/", sc.name + "=" + raw, 0, now_ms);
      FUZZ_CHECK(r.via == RouteVia::ServerCookie && r.backend == b);
    }
    if (sc.enabled && sc.mode == ServerCookieMode::Prefix) {
      Route r = router.route("/", sc.name + "=" + v + "~abc", 0, now_ms);
      FUZZ_CHECK(r.via == RouteVia::ServerCookie && r.backend == b && r.strip_prefix);
    }
  }
  if (cfg.cookie.inject) FUZZ_CHECK(serialize_set_cookie(cfg.cookie, "5_S2AZdCI1bklnExAAAk"));

  Route h = router.route(cfg.path + "?EIO=4&transport=polling", "", 7, now_ms);
  FUZZ_CHECK(h.handshake && h.backend >= -1 && h.backend < n);
  FUZZ_CHECK((h.backend < 0) == (h.local_status != 0));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(LogLevel::Error);
  if (std::time(nullptr) != fuzz::g_wall_clock_s) {
    std::fprintf(stderr, "fuzz_config: the time() override is not in effect\n");
    std::abort();
  }
  addrinfo* res = nullptr;
  const int before = g_resolver_calls;
  const int rc = getaddrinfo("resolver-check.invalid", nullptr, nullptr, &res);
  if (g_resolver_calls != before + 1 || rc != EAI_NONAME) {
    std::fprintf(stderr, "fuzz_config: the getaddrinfo override is not in effect\n");
    std::abort();
  }
  // And the loader's call reaches it too.
  ConfigResult r = load_config_string(
      "listen: 127.0.0.1:1\nbackends: [{name: a, address: 'x.invalid:1'}]\n", "check.yaml");
  if (r.config || g_resolver_calls != before + 2) {
    std::fprintf(stderr, "fuzz_config: the loader does not use the getaddrinfo override\n");
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  if (should_skip(yaml)) return -1;  // -1: not added to the corpus

  ConfigResult r = load_config_string(yaml, "fuzz.yaml");
  FUZZ_CHECK(r.config.has_value() == r.errors.empty());
  for (const ConfigError& e : r.errors) {
    FUZZ_CHECK(e.line >= 0 && e.column >= 0);
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(e.file == "fuzz.yaml");
    FUZZ_CHECK(!e.to_string().empty());
  }
  if (r.config) {
    FUZZ_CHECK(r.config->source == "fuzz.yaml");
    check_accepted(*r.config);
  }
  return 0;
}
