// fuzz_request: raw client bytes -> RequestReader (the request path's llhttp driver, as
// ClientConn uses it) -> for every complete request head: Router::route, pin/learn/unpin,
// and the rewrites the proxy applies to what it forwards (sid in the query, Cookie header).
//
// Two routers per input, built fresh so that every run of an input is deterministic:
//   A: tag_sids + HAProxy insert cookie (indirect, maxidle/maxlife), a tiny affinity table
//   B: backend_tags with '~', prefix-mode server cookie, `hash` balancing, on_down: strict
// Both take the reconnect hint `prev_sid` (sticky.reconnect_hint).
#include <llhttp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "stickyd/config.hpp"
#include "stickyd/cookie.hpp"
#include "stickyd/http_head.hpp"
#include "stickyd/log.hpp"
#include "stickyd/query.hpp"
#include "stickyd/request_reader.hpp"
#include "stickyd/rewrite.hpp"
#include "stickyd/router.hpp"

using namespace stickyd;

FUZZ_DEFINE_CLOCK  // server-cookie dates follow the session's clock below, not the real one

namespace {

constexpr int kBackends = 3;

const char* const kConfigA =
    "listen: 127.0.0.1:8080\n"
    "backends:\n"
    "  - {name: n1, address: 127.0.0.1:3001}\n"
    "  - {name: n2, address: 127.0.0.1:3002, cookie_aliases: [old2]}\n"
    "  - {name: n3, address: 127.0.0.1:3003}\n"
    "cookie: true\n"
    "affinity: {max_sessions: 8}\n"
    "sticky:\n"
    "  tag_sids: true\n"
    "  reconnect_hint: prev_sid\n"
    "  server_cookie: {name: SERVERID, mode: insert, indirect: true, maxidle: 30m, maxlife: 8h}\n";

const char* const kConfigB =
    "listen: 127.0.0.1:8080\n"
    "backends:\n"
    "  - {name: n1, address: 127.0.0.1:3001, cookie: s1}\n"
    "  - {name: n2, address: 127.0.0.1:3002, cookie: s2}\n"
    "  - {name: n3, address: '[::1]:3003', cookie: s3}\n"
    "path: /engine.io/\n"
    "cookie: {name: sess}\n"
    "balance: hash\n"
    "affinity: {max_sessions: 4, idle_timeout: 10s}\n"
    "sticky:\n"
    "  on_down: strict\n"
    "  reconnect_hint: prev_sid\n"
    "  backend_tags: {separator: '~'}\n"
    "  server_cookie: {name: SRV, mode: prefix}\n";

const Config& load(const char* yaml) {
  ConfigResult r = load_config_string(yaml, "fuzz_request.yaml");
  if (!r.config) {
    for (const ConfigError& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    __builtin_trap();
  }
  return *new Config(std::move(*r.config));  // lives for the whole process
}

// The request path's reader (as ClientConn uses it); bodies are not looked at here.
struct Conn final : RequestSink {
  void on_request_begin() override {}
  void on_forward_body(std::string_view) override {}
};

// What ClientConn::forwarded_cookie does with one Cookie header line.
std::string forwarded_cookie(const Config& cfg, const Persistence& p, const Route& r,
                             std::string_view header) {
  std::string c(header);
  if (r.strip_tag) {
    c = edit_cookie_header(c, cfg.cookie.name, [&](std::string_view v) -> std::optional<std::string> {
      if (auto t = p.parse_tag(v)) return std::string(t->untagged);
      return std::string(v);
    });
  }
  const ServerCookieConfig& sc = cfg.sticky.server_cookie;
  if (r.strip_prefix) {
    c = edit_cookie_header(c, sc.name, [](std::string_view v) -> std::optional<std::string> {
      size_t tilde = v.find('~');
      return std::string(tilde == std::string_view::npos ? v : v.substr(tilde + 1));
    });
  }
  if (r.strip_server_cookie) {
    c = edit_cookie_header(c, sc.name, [](std::string_view) { return std::nullopt; });
    // indirect: the application must never see the proxy's cookie.
    FUZZ_CHECK(!find_cookie(c, sc.name));
  }
  return c;
}

struct Session {
  const Config& cfg;
  Router router;
  std::vector<Route> pinned;  // held polls / tunnels still open
  int64_t now_ms = 1700000000000;  // server-cookie dates are unix seconds: be realistic
  uint64_t learnt = 0;

  explicit Session(const Config& c) : cfg(c), router(c) {}

  void on_head(const RequestReader& reader, uint64_t seed) {
    const HttpHead& head = reader.head();
    std::string_view target = head.start();
    if (reader.verdict().status) return;  // refused before routing (405/400/501/505)
    std::string cookies = head.join("cookie", "; ");
    const uint64_t h = fuzz::fnv1a(target, fuzz::fnv1a(cookies, seed));

    // Time passes between requests, sometimes a lot (idle expiry, server-cookie maxidle).
    now_ms += static_cast<int64_t>(h % 4096) * ((h >> 12) % 8 == 0 ? 100000 : 10);

    // Backends go down, come back, are drained or put in maintenance.
    if ((h >> 16) % 8 == 0) {
      int b = static_cast<int>((h >> 20) % kBackends);
      switch ((h >> 24) % 5) {
        case 0: router.set_health(b, Health::Down, now_ms); break;
        case 1: router.set_health(b, Health::Up, now_ms); break;
        case 2: router.set_admin_state(b, AdminState::Drain); break;
        case 3: router.set_admin_state(b, AdminState::Maint); break;
        default: router.set_admin_state(b, AdminState::Ready); break;
      }
    }

    fuzz::g_wall_clock_s = now_ms / 1000;
    Route r = router.route(target, cookies, h, now_ms);

    // ---- invariants of a route
    FUZZ_CHECK(r.backend >= -1 && r.backend < kBackends);
    FUZZ_CHECK(r.local_status == 0 || r.local_status == 400 || r.local_status == 503);
    if (r.backend == -1) FUZZ_CHECK(r.local_status != 0);
    if (r.backend >= 0) FUZZ_CHECK(r.local_status == 0);
    if (r.local_status == 400) FUZZ_CHECK(r.source == KeySource::Query);
    RequestTarget t = split_target(target);
    std::optional<std::string> qsid = query_param(t.query, "sid");
    if (r.handshake) FUZZ_CHECK(r.engineio && (!qsid || qsid->empty()));
    switch (r.source) {
      case KeySource::Query:
        FUZZ_CHECK(r.engineio && qsid && !qsid->empty());
        FUZZ_CHECK(!r.key.empty() && r.key.size() <= qsid->size());
        break;
      case KeySource::Cookie: {
        std::optional<std::string> c = find_cookie(cookies, cfg.cookie.name);
        FUZZ_CHECK(c && !c->empty());
        FUZZ_CHECK(!r.key.empty() && r.key.size() <= c->size());
        break;
      }
      case KeySource::ServerCookie:
      case KeySource::None:
        FUZZ_CHECK(r.key.empty());
        break;
    }
    if (r.via == RouteVia::Tag) FUZZ_CHECK(router.persistence().any_tags());
    const std::string& hint = cfg.sticky.reconnect_hint;
    FUZZ_CHECK(r.strip_hint == (r.engineio && query_param_raw(t.query, hint).has_value()));
    if (r.via == RouteVia::Hint) {
      // Only a handshake follows a hint, and only to a node that may take a new session.
      FUZZ_CHECK(r.handshake && r.strip_hint && r.source == KeySource::None);
      const BackendState& s = router.backend(r.backend);
      FUZZ_CHECK(s.admin == AdminState::Ready && s.health != Health::Down && s.weight > 0);
    }

    if (r.backend < 0) return;  // answered locally

    // ---- what the proxy forwards (ClientConn::build_upstream_head)
    std::string fwd(target);
    if (r.strip_tag && r.source == KeySource::Query) fwd = replace_query_param(fwd, "sid", r.key);
    if (r.strip_hint) fwd = remove_query_param(fwd, hint);
    RequestTarget ft = split_target(fwd);
    FUZZ_CHECK(ft.path == t.path);
    if (r.strip_tag && r.source == KeySource::Query) {
      std::optional<std::string> fsid = query_param(ft.query, "sid");
      FUZZ_CHECK(fsid && *fsid == r.key);  // the backend sees its own, untagged sid
    }
    if (r.strip_hint) {
      FUZZ_CHECK(!query_param_raw(ft.query, hint));  // the hint never reaches a node
      if (!r.strip_tag || r.source != KeySource::Query) FUZZ_CHECK(query_param(ft.query, "sid") == qsid);
    }
    for (size_t i = 0; i < head.count(); ++i) {
      if (!iequals(head.name(i), "cookie")) continue;
      if (r.strip_tag || r.strip_prefix || r.strip_server_cookie)
        (void)forwarded_cookie(cfg, router.persistence(), r, head.value(i));
    }

    // ---- the exchange: pin while in flight, learn the sid a handshake creates
    if (router.pin(r, now_ms)) pinned.push_back(r);
    if (r.handshake) {
      std::string sid;
      if (auto tp = query_param(t.query, "t"); tp && !tp->empty())
        sid = *tp;  // an input-chosen sid (the cache buster is as good a source as any)
      else
        sid = "fz" + std::to_string(learnt);
      ++learnt;
      OpenPacket open;
      open.sid = sid;
      open.ping_interval_ms = static_cast<int64_t>((h >> 28) % 30000);
      open.ping_timeout_ms = static_cast<int64_t>((h >> 44) % 30000);
      router.learn(sid, r.backend, (h >> 40) % 2 ? &open : nullptr, now_ms);
      if (router.persistence().proxy_tags() && is_reflectable_sid(sid)) {
        std::string tagged = router.persistence().tag(r.backend, sid);
        auto tag = router.persistence().parse_tag(tagged);
        FUZZ_CHECK(tag && tag->backend == r.backend && tag->untagged == sid);
      }
    } else if (r.via == RouteVia::UnknownKey && (h >> 36) % 4 == 0) {
      router.learn(r.key, r.backend, nullptr, now_ms);  // the backend knew it after all
    }
    // Held polls and tunnels end in their own time.
    while (!pinned.empty() && (pinned.size() > 3 || (h >> 52) % 2 == 0)) {
      router.unpin(pinned.front(), now_ms);
      pinned.erase(pinned.begin());
    }
  }

  void finish() {
    for (const Route& r : pinned) router.unpin(r, now_ms);
    pinned.clear();
    router.table().expire(now_ms + 86400000);
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(LogLevel::Error);  // the router warns on strict 503s: keep the output quiet
  if (std::time(nullptr) != fuzz::g_wall_clock_s) {
    std::fprintf(stderr, "fuzz_request: the time() override is not in effect\n");
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Config& cfg_a = load(kConfigA);
  static const Config& cfg_b = load(kConfigB);
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  for (const Config* cfg : {&cfg_a, &cfg_b}) {
    Session session(*cfg);
    Conn conn;
    RequestReader reader(conn, cfg->limits);
    const char* p = input.data();
    const char* end = input.data() + input.size();
    uint64_t seed = cfg == &cfg_a ? 1 : 2;
    for (int guard = 0; guard < 10000; ++guard) {
      RequestReader::Result r = reader.execute(p, end);
      FUZZ_CHECK(r.stop >= p && r.stop <= end);
      if (r.event == RequestReader::Event::Head) {
        p = r.stop;
        session.on_head(reader, seed++);
        continue;
      }
      if (r.event == RequestReader::Event::Message) {
        reader.resume();  // the proxy resumes here once the exchange has ended
        p = r.stop;
        continue;
      }
      break;  // all consumed, an upgrade (tunnel bytes follow) or a parse error (400/414/431)
    }
    session.finish();
  }
  return 0;
}
