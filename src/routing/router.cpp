#include "stickyd/router.hpp"

#include <algorithm>
#include <ctime>

#include "stickyd/cookie.hpp"
#include "stickyd/log.hpp"
#include "stickyd/query.hpp"

namespace stickyd {

namespace {
// Socket.IO's default connectionStateRecovery.maxDisconnectionDuration (2 min) plus a
// reconnection backoff: how long a hinted sid should stay known.
constexpr int64_t kRecoveryWindowMs = 150000;
}  // namespace

const char* to_string(KeySource s) {
  switch (s) {
    case KeySource::None: return "none";
    case KeySource::Query: return "sid";
    case KeySource::Cookie: return "cookie";
    case KeySource::ServerCookie: return "server-cookie";
  }
  return "?";
}

const char* to_string(RouteVia v) {
  switch (v) {
    case RouteVia::Table: return "table";
    case RouteVia::Tag: return "tag";
    case RouteVia::ServerCookie: return "server-cookie";
    case RouteVia::Balance: return "balance";
    case RouteVia::UnknownKey: return "unknown-key";
    case RouteVia::Redispatch: return "redispatch";
    case RouteVia::Hint: return "hint";
    case RouteVia::None: return "none";
  }
  return "?";
}

Router::Router(const Config& cfg)
    : Router(cfg, nullptr) {}

Router::Router(const Config& cfg, AffinityTable& shared_table) : Router(cfg, &shared_table) {}

Router::Router(const Config& cfg, AffinityTable* shared_table)
    : cfg_(cfg),
      balancer_(make_balancer(cfg.balance)),
      persistence_(cfg),
      own_table_(shared_table ? nullptr
                              : std::make_unique<AffinityTable>(cfg.affinity.max_sessions)),
      table_(shared_table ? *shared_table : *own_table_) {
  for (const BackendConfig& b : cfg.backends) {
    BackendState s;
    s.config = b;
    s.weight = b.weight;
    backends_.push_back(std::move(s));
  }
  candidates_.resize(backends_.size());
}

bool Router::serves_sessions(int b) const {
  const BackendState& s = backends_[static_cast<size_t>(b)];
  return s.admin != AdminState::Maint && (s.health != Health::Down || s.paced_down) &&
         !s.config.removed;
}

uint32_t Router::effective_weight(int b, int64_t now_ms) const {
  const BackendState& s = backends_[static_cast<size_t>(b)];
  int64_t ramp = cfg_.health.slow_start.count();
  if (ramp <= 0 || s.up_since_ms == 0 || s.weight == 0) return s.weight;
  int64_t elapsed = now_ms - s.up_since_ms;
  if (elapsed >= ramp) return s.weight;
  // Linear ramp from 1/ramp share to full, so a node that just came back is not flooded.
  uint64_t w = static_cast<uint64_t>(s.weight) * static_cast<uint64_t>(std::max<int64_t>(elapsed, 0)) /
               static_cast<uint64_t>(ramp);
  return static_cast<uint32_t>(std::max<uint64_t>(w, 1));
}

int Router::balance(uint64_t client_hash, int64_t now_ms, int exclude) {
  for (size_t i = 0; i < backends_.size(); ++i) {
    const BackendState& s = backends_[i];
    candidates_[i].weight = effective_weight(static_cast<int>(i), now_ms);
    candidates_[i].usable = s.admin == AdminState::Ready && s.health != Health::Down &&
                            !s.config.removed && static_cast<int>(i) != exclude;
    candidates_[i].load =
        table_.sessions_of(static_cast<uint16_t>(i)) + s.tunnels + s.in_flight;
  }
  BalanceContext ctx;
  ctx.client_hash = client_hash;
  if (shared_balancer_) {
    std::lock_guard lock(shared_balancer_->mu);
    return shared_balancer_->balancer->pick(candidates_, ctx);
  }
  return balancer_->pick(candidates_, ctx);
}

void Router::share_balancer(SharedBalancer& shared) {
  std::lock_guard lock(shared.mu);
  if (!shared.balancer) shared.balancer = make_balancer(cfg_.balance);
  shared_balancer_ = &shared;
  balancer_.reset();  // picks go to the shared one from now on
}

// A reconnecting client names the session it had (connection state recovery restores it only
// on that node with an in-memory adapter): its handshake goes there if that node may take a
// new session now. Anything else (unknown, evicted, malformed, a node not ready) is ignored:
// the handshake is balanced as usual.
void Router::route_hint(Route& r, std::string_view query, int64_t now_ms) {
  std::optional<std::string> prev = query_param(query, cfg_.sticky.reconnect_hint);
  if (!prev || prev->empty() || prev->size() > 256) return;
  int b = -1;
  if (auto tag = persistence_.parse_tag(*prev)) {
    b = tag->backend;
  } else if (std::optional<uint16_t> known = table_.touch(*prev, now_ms)) {
    if (*known != AffinityTable::kEvicted) b = *known;
  }
  if (b < 0 || static_cast<size_t>(b) >= backends_.size()) return;
  const BackendState& s = backends_[static_cast<size_t>(b)];
  if (s.admin != AdminState::Ready || s.health == Health::Down || s.config.removed || s.paced_down ||
      s.weight == 0)
    return;
  r.backend = b;
  r.via = RouteVia::Hint;
}

void Router::route_sid(Route& r, std::string_view sid, KeySource source, int64_t now_ms) {
  if (auto tag = persistence_.parse_tag(sid)) {
    r.backend = tag->backend;
    r.via = RouteVia::Tag;
    r.key.assign(tag->untagged);
    r.source = source;
    r.strip_tag = persistence_.proxy_tags();
    // Keep a learnt entry fresh too; an evicted session is not routed by its tag.
    if (table_.touch(r.key, now_ms) == AffinityTable::kEvicted) {
      r.backend = -1;
      r.evicted = true;
    }
    return;
  }
  r.key.assign(sid);
  r.source = source;
  if (std::optional<uint16_t> b = table_.touch(r.key, now_ms)) {
    if (*b == AffinityTable::kEvicted) {
      r.evicted = true;
      return;
    }
    r.backend = *b;
    r.via = RouteVia::Table;
  }
}

Route Router::route(std::string_view target, std::string_view cookie_header,
                    uint64_t client_hash, int64_t now_ms) {
  Route r;
  route_into(r, target, cookie_header, client_hash, now_ms);
  return r;
}

void Router::route_into(Route& r, std::string_view target, std::string_view cookie_header,
                        uint64_t client_hash, int64_t now_ms) {
  {
    std::string key = std::move(r.key);  // keep its buffer: no allocation per request
    key.clear();
    r = Route{};
    r.key = std::move(key);
  }
  RequestTarget t = split_target(target);
  r.engineio = is_engineio_path(t.path, cfg_.path);
  bool has_sid = false;
  if (r.engineio) {
    // engine.io treats a missing or empty sid alike: a handshake.
    std::optional<std::string_view> sid = query_param_raw(t.query, "sid");
    if (!cfg_.sticky.reconnect_hint.empty() && query_param_raw(t.query, cfg_.sticky.reconnect_hint))
      r.strip_hint = true;  // never forwarded, whatever it says
    if (sid && !sid->empty()) {
      has_sid = true;
      if (query_needs_decoding(*sid)) {
        std::string decoded = percent_decode(*sid, true);  // rare: sids are base64url
        route_sid(r, decoded, KeySource::Query, now_ms);
      } else {
        route_sid(r, *sid, KeySource::Query, now_ms);
      }
      if (r.evicted) {
        // Moved off its node by a paced eviction: the client re-handshakes elsewhere.
        r.local_status = 400;
        return;
      }
    } else {
      // engine.io answers only requests naming a transport; others under its path are
      // Socket.IO's own files (/socket.io/socket.io.js), streamed, not read to learn a sid.
      r.handshake = query_param_raw(t.query, "transport").has_value();
      if (r.handshake && r.strip_hint) route_hint(r, t.query, now_ms);
    }
  }

  const ServerCookieConfig& sc = cfg_.sticky.server_cookie;
  if (sc.enabled && !cookie_header.empty()) {
    if (std::optional<std::string> v = find_cookie(cookie_header, sc.name)) {
      // HAProxy's cookie dates are wall-clock time (they must agree across replicas and
      // with cookies HAProxy issued); now_ms is the loop's monotonic clock.
      int64_t now_s = static_cast<int64_t>(std::time(nullptr));
      if (sc.mode == ServerCookieMode::Prefix) {
        size_t tilde = v->find('~');
        int b = tilde == std::string::npos ? -1
                                           : persistence_.backend_for_value(v->substr(0, tilde));
        if (b >= 0) {
          r.strip_prefix = true;
          r.server_cookie_ok = true;
          if (r.backend < 0) {
            r.backend = b;
            r.via = RouteVia::ServerCookie;
          }
        }
      } else {
        Persistence::ServerCookie c = persistence_.parse_server_cookie(*v, now_s);
        // With `indirect` the cookie is ours alone: never shown to the application.
        r.strip_server_cookie = sc.indirect && sc.mode == ServerCookieMode::Insert;
        if (c.backend >= 0 && !c.expired) {
          if (r.backend < 0) {
            r.backend = c.backend;
            r.via = RouteVia::ServerCookie;
            if (r.source == KeySource::None) r.source = KeySource::ServerCookie;
          }
          // An alias (a value from an old setup) routes, and is replaced by the main value.
          r.server_cookie_ok = c.backend == r.backend && c.value == persistence_.value_of(c.backend);
          r.refresh_server_cookie = persistence_.needs_refresh(c, now_s);
          r.server_cookie_first_seen = c.first_seen;
        }
      }
    }
  }

  if (r.backend < 0 && !has_sid && !cookie_header.empty()) {
    std::optional<std::string> c = find_cookie(cookie_header, cfg_.cookie.name);
    if (c && !c->empty()) route_sid(r, *c, KeySource::Cookie, now_ms);
  }

  if (r.backend >= 0 && !serves_sessions(r.backend)) {
    const std::string& name = backends_[static_cast<size_t>(r.backend)].config.name;
    if (cfg_.sticky.strict) {
      log::warn("session's backend unavailable (strict)", {{"backend", name}});
      r.backend = -1;
      r.local_status = 503;
      return;
    }
    if (has_sid) {
      // The session died with its node: tell the client now, in Engine.IO's own words, so it
      // re-handshakes at once instead of timing out.
      r.backend = -1;
      r.local_status = 400;
      return;
    }
    r.backend = balance(client_hash, now_ms);
    r.via = RouteVia::Redispatch;
    r.server_cookie_ok = false;
  } else if (r.backend < 0) {
    r.backend = balance(client_hash, now_ms);
    r.via = r.source == KeySource::None ? RouteVia::Balance : RouteVia::UnknownKey;
  }
  if (r.backend < 0) {
    r.local_status = 503;
    return;
  }
  ++backends_[static_cast<size_t>(r.backend)].requests;
}

void Router::learn(std::string_view sid, int backend, const OpenPacket* open, int64_t now_ms) {
  int64_t idle;
  if (cfg_.affinity.idle_timeout) {
    idle = cfg_.affinity.idle_timeout->count();
  } else if (open && open->ping_interval_ms >= 0 && open->ping_timeout_ms >= 0) {
    // The backend drops a session silent for pingInterval + pingTimeout; keep the entry for
    // twice that, since forgetting too early costs a reconnect and too late only memory.
    idle = 2 * (open->ping_interval_ms + open->ping_timeout_ms);
  } else {
    idle = cfg_.affinity.fallback_idle.count();
  }
  // With reconnect hints a sid is still asked for after its session ended, as long as
  // Socket.IO keeps the state to recover (maxDisconnectionDuration, 2 min by default).
  if (!cfg_.affinity.idle_timeout && !cfg_.sticky.reconnect_hint.empty())
    idle = std::max<int64_t>(idle, kRecoveryWindowMs);
  table_.learn(sid, static_cast<uint16_t>(backend), idle, now_ms);
}

bool Router::pin(const Route& r, int64_t now_ms) {
  return !r.key.empty() && table_.pin(r.key, now_ms);
}

void Router::unpin(const Route& r, int64_t now_ms) {
  if (!r.key.empty()) table_.unpin(r.key, now_ms);
}

void Router::set_health(int backend, Health h, int64_t now_ms) {
  BackendState& b = backends_[static_cast<size_t>(backend)];
  if (h == Health::Up && b.health != Health::Up) b.up_since_ms = now_ms;
  b.health = h;
}

bool Router::set_admin_state(int backend, AdminState s) {
  if (backend < 0 || static_cast<size_t>(backend) >= backends_.size()) return false;
  backends_[static_cast<size_t>(backend)].admin = s;
  return true;
}

bool Router::set_weight(int backend, uint32_t w) {
  if (backend < 0 || static_cast<size_t>(backend) >= backends_.size()) return false;
  backends_[static_cast<size_t>(backend)].weight = w;
  return true;
}

int Router::find_backend(std::string_view name) const {
  for (size_t i = 0; i < backends_.size(); ++i)
    if (backends_[i].config.name == name) return static_cast<int>(i);
  return -1;
}

void Router::reconfigure() {
  for (size_t i = 0; i < cfg_.backends.size(); ++i) {
    const BackendConfig& b = cfg_.backends[i];
    if (i >= backends_.size()) {
      BackendState s;
      s.config = b;
      s.weight = b.weight;
      backends_.push_back(std::move(s));
      continue;
    }
    BackendState& s = backends_[i];
    if (b.removed && !s.config.removed) table_.forget_backend(static_cast<uint16_t>(i));
    if (s.config.weight != b.weight) s.weight = b.weight;  // the file wins over the admin API
    s.config = b;
  }
  candidates_.resize(backends_.size());
  if (!shared_balancer_) {
    balancer_ = make_balancer(cfg_.balance);
  } else {
    // Every worker reconfigures with the same config: the first one replaces the shared
    // balancer (a policy change), the others find it already current.
    std::lock_guard lock(shared_balancer_->mu);
    ++reloads_;
    if (shared_balancer_->reloads < reloads_) {
      shared_balancer_->balancer = make_balancer(cfg_.balance);
      shared_balancer_->reloads = reloads_;
    }
  }
  persistence_.rebuild();
  table_.set_max_sessions(cfg_.affinity.max_sessions);
}

}  // namespace stickyd
