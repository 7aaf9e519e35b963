#include "stickyd/router.hpp"

#include "stickyd/cookie.hpp"
#include "stickyd/log.hpp"
#include "stickyd/query.hpp"

namespace stickyd {

const char* to_string(KeySource s) {
  switch (s) {
    case KeySource::None: return "none";
    case KeySource::Query: return "sid";
    case KeySource::Cookie: return "cookie";
  }
  return "?";
}

const char* to_string(RouteVia v) {
  switch (v) {
    case RouteVia::Table: return "table";
    case RouteVia::Balance: return "balance";
    case RouteVia::UnknownKey: return "unknown-key";
  }
  return "?";
}

Router::Router(const Config& cfg)
    : cfg_(cfg), balancer_(make_round_robin()), table_(cfg.affinity.max_sessions) {
  for (const BackendConfig& b : cfg.backends) backends_.push_back(BackendState{b});
  candidates_.resize(backends_.size());
}

int Router::balance(int64_t now_ms) {
  for (size_t i = 0; i < backends_.size(); ++i) {
    candidates_[i].weight = backends_[i].config.weight;
    candidates_[i].usable = backends_[i].down_until_ms <= now_ms;
  }
  int b = balancer_->pick(candidates_);
  if (b < 0) {
    // Every weighted backend is marked down: trying one beats refusing everyone, since a
    // passive mark is only a guess. Weight-0 backends still take no new sessions.
    for (auto& c : candidates_) c.usable = true;
    b = balancer_->pick(candidates_);
  }
  return b;
}

Route Router::route(std::string_view target, std::string_view cookie_header, int64_t now_ms) {
  Route r;
  RequestTarget t = split_target(target);
  r.engineio = is_engineio_path(t.path, cfg_.path);
  if (r.engineio) {
    // engine.io treats a missing or empty sid alike: a handshake.
    std::optional<std::string> sid = query_param(t.query, "sid");
    if (sid && !sid->empty()) {
      r.key = std::move(*sid);
      r.source = KeySource::Query;
    } else {
      r.handshake = true;
    }
  }
  if (r.source == KeySource::None && !cookie_header.empty()) {
    std::optional<std::string> c = find_cookie(cookie_header, cfg_.cookie.name);
    if (c && !c->empty()) {
      r.key = std::move(*c);
      r.source = KeySource::Cookie;
    }
  }
  if (r.source != KeySource::None) {
    if (std::optional<uint16_t> b = table_.touch(r.key, now_ms)) {
      r.backend = *b;
      r.via = RouteVia::Table;
    } else {
      r.backend = balance(now_ms);
      r.via = RouteVia::UnknownKey;
    }
  } else {
    r.backend = balance(now_ms);
    r.via = RouteVia::Balance;
  }
  if (r.backend >= 0) ++backends_[static_cast<size_t>(r.backend)].requests;
  return r;
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
  table_.learn(sid, static_cast<uint16_t>(backend), idle, now_ms);
}

void Router::pin(const Route& r, int64_t now_ms) {
  if (r.via == RouteVia::Table) table_.pin(r.key, now_ms);
}

void Router::unpin(const Route& r, int64_t now_ms) {
  if (r.via == RouteVia::Table) table_.unpin(r.key, now_ms);
}

void Router::connect_failed(int backend, int64_t now_ms) {
  BackendState& b = backends_[static_cast<size_t>(backend)];
  ++b.consecutive_failures;
  // Back off new sessions for a moment; active health checks are a separate concern.
  b.down_until_ms = now_ms + 2000;
}

void Router::connect_succeeded(int backend) {
  BackendState& b = backends_[static_cast<size_t>(backend)];
  b.consecutive_failures = 0;
  b.down_until_ms = 0;
}

}  // namespace stickyd
