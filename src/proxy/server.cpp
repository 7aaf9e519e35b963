#include <algorithm>

#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/tls.hpp"

namespace stickyd {

namespace {
constexpr size_t kMaxIdlePerBackend = 256;

std::vector<std::string> backend_names(const Config& cfg) {
  std::vector<std::string> names;
  for (const BackendConfig& b : cfg.backends) names.push_back(b.name);
  return names;
}
}  // namespace

Server::Server(uv_loop_t* loop, Config config)
    : loop_(loop),
      config_(std::move(config)),
      router_(config_),
      metrics_(config_.backends.size(), backend_names(config_)),
      idle_(config_.backends.size()) {
  uv_timer_init(loop_, &sweep_timer_);
  uv_timer_init(loop_, &grace_timer_);
  uv_timer_init(loop_, &ticket_timer_);
  sweep_timer_.data = this;
  grace_timer_.data = this;
  ticket_timer_.data = this;
  health_ = std::make_unique<HealthChecker>(
      loop_, config_, [this](int b, Health h, const std::string& why) { on_health(b, h, why); });
}

Server::~Server() = default;

bool Server::build_tls_contexts(const Config& cfg) {
  std::vector<std::shared_ptr<tls::ServerContext>> servers;
  std::vector<std::shared_ptr<tls::ClientContext>> clients;
  std::string error;
  for (const ListenConfig& lc : cfg.listen) {
    if (!lc.tls) {
      servers.push_back(nullptr);
      continue;
    }
    std::shared_ptr<tls::ServerContext> c = tls::ServerContext::create(*lc.tls, error);
    if (!c) {
      log::error("TLS certificate unusable", {{"listen", lc.text()}, {"error", error}});
      return false;
    }
    servers.push_back(std::move(c));
  }
  for (const BackendConfig& b : cfg.backends) {
    if (!b.tls.enabled || b.removed) {
      clients.push_back(nullptr);
      continue;
    }
    std::shared_ptr<tls::ClientContext> c = tls::ClientContext::create(b.tls, error);
    if (!c) {
      log::error("backend TLS unusable", {{"backend", b.name}, {"error", error}});
      return false;
    }
    clients.push_back(std::move(c));
  }
  listener_tls_ = std::move(servers);
  backend_tls_ = std::move(clients);
  return true;
}

void Server::ticket_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  for (auto& c : self->listener_tls_)
    if (c) c->rotate_ticket_keys();
}

bool Server::start() {
  if (!build_tls_contexts(config_)) return false;
  for (size_t i = 0; i < config_.listen.size(); ++i) {
    const SocketAddress& a = config_.listen[i].address;
    auto l = std::make_unique<Listener>(loop_, a, [this, i](uv_stream_t* s) {
      (void)s;
      on_connection(i);
    });
    int r = l->start();
    if (r != 0) {
      log::error("cannot listen", {{"address", a.text}, {"error", uv_strerror(r)}});
      return false;
    }
    log::info("listening", {{"address", l->bound_address()},
                            {"tls", config_.listen[i].tls ? "yes" : "no"}});
    listeners_.push_back(std::move(l));
  }
  Millis rotation{0};
  for (const ListenConfig& lc : config_.listen)
    if (lc.tls && lc.tls->session_tickets && (rotation.count() == 0 || lc.tls->ticket_key_rotation < rotation))
      rotation = lc.tls->ticket_key_rotation;
  if (rotation.count() > 0)
    uv_timer_start(&ticket_timer_, ticket_cb, static_cast<uint64_t>(rotation.count()),
                   static_cast<uint64_t>(rotation.count()));
  if (config_.admin.enabled) {
    admin_ = std::make_unique<AdminServer>(loop_, config_.admin, *this);
    int r = admin_->start();
    if (r != 0) {
      log::error("cannot listen (admin)",
                 {{"address", config_.admin.listen.text}, {"error", uv_strerror(r)}});
      return false;
    }
  }
  health_->start();
  uv_timer_start(&sweep_timer_, sweep_cb, 1000, 1000);
  return true;
}

void Server::sweep_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  size_t n = self->router_.table().expire(self->now_ms());
  if (n) log::debug("sessions expired", {{"count", n}, {"table", self->router_.table().size()}});
}

void Server::on_health(int backend, Health h, const std::string& reason) {
  router_.set_health(backend, h, now_ms());
  if (h != Health::Unchecked) metrics_.health_transition(backend, h == Health::Up);
  (void)reason;  // the checker logs every transition with its reason
}

void Server::connect_result(int backend, bool ok) {
  if (!ok) metrics_.backend_connect_failed(backend);
  if (health_) health_->report_traffic(backend, ok);
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& l : listeners_) l->close();
  if (admin_) admin_->stop();
  if (health_) health_->stop();
  uv_timer_stop(&sweep_timer_);
  uv_timer_stop(&grace_timer_);
  uv_timer_stop(&ticket_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ticket_timer_), nullptr);
  std::vector<ClientConn*> cs;
  for (auto& [p, _] : clients_) cs.push_back(p);
  for (ClientConn* c : cs) c->close();
  std::vector<UpstreamConn*> us;
  for (auto& [p, _] : upstreams_) us.push_back(p);
  for (UpstreamConn* u : us) u->close();
}

void Server::drain(Millis grace) {
  if (draining_ || stopped_) return;
  draining_ = true;
  for (auto& l : listeners_) l->close();
  log::info("draining", {{"connections", clients_.size()}, {"grace_ms", grace.count()}});
  // Idle keep-alive connections have nothing in flight: close them now; busy ones close
  // when their exchange ends (finish_exchange checks draining()).
  std::vector<ClientConn*> idle;
  for (auto& [p, _] : clients_)
    if (p->idle()) idle.push_back(p);
  for (ClientConn* c : idle) c->close_now();
  for (auto& pool : idle_) {
    std::vector<UpstreamConn*> parked(pool.begin(), pool.end());
    for (UpstreamConn* u : parked) u->close();
  }
  uv_timer_start(&grace_timer_, grace_cb, static_cast<uint64_t>(grace.count()), 0);
  maybe_finish_drain();
}

void Server::grace_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  log::warn("grace time over: closing what is left", {{"connections", self->clients_.size()}});
  self->stop();
}

void Server::maybe_finish_drain() {
  if (draining_ && !stopped_ && clients_.empty()) {
    log::info("drained");
    stop();
  }
}

bool Server::admit(const std::string& ip) {
  uint32_t limit = config_.limits.max_connections_per_ip;
  uint32_t& n = per_ip_[ip];
  if (limit && n >= limit) {
    ++refused_;
    if (now_ms() - last_refusal_log_ms_ >= 1000) {  // at most one line a second under attack
      log::warn("connection refused: max_connections_per_ip reached",
                {{"client", ip}, {"refused_total", refused_}});
      last_refusal_log_ms_ = now_ms();
    }
    return false;
  }
  ++n;
  return true;
}

void Server::release_ip(const std::string& ip) {
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
}

void Server::on_connection(size_t index) {
  const ListenConfig& lc = config_.listen[index];
  bool secure_cookies = lc.tls && lc.tls->secure_cookies;
  Millis handshake_timeout = lc.tls ? lc.tls->handshake_timeout : Millis(0);
  auto conn = std::make_unique<ClientConn>(*this, listener_tls_[index], secure_cookies,
                                           handshake_timeout);
  ClientConn* c = conn.get();
  clients_.emplace(c, std::move(conn));
  metrics_.client_opened();
  if (uv_accept(listeners_[index]->stream(), c->stream()) != 0) {
    c->close();
    return;
  }
  if (clients_.size() > config_.limits.max_connections) {
    // Over the limit: accepted only to be closed, so the backlog does not fill up; the
    // connections already open are served as before. Logged at most once a second.
    ++refused_;
    if (now_ms() - last_refusal_log_ms_ >= 1000) {
      log::warn("connection refused: max_connections reached",
                {{"open", clients_.size() - 1}, {"refused_total", refused_}});
      last_refusal_log_ms_ = now_ms();
    }
    c->close();
    return;
  }
  c->start();
}

UpstreamConn* Server::acquire_upstream(int backend, bool allow_reuse, bool& reused) {
  auto& pool = idle_[static_cast<size_t>(backend)];
  while (allow_reuse && !pool.empty()) {
    UpstreamConn* u = pool.back();  // most recently used: least likely to be timed out
    pool.pop_back();
    if (u->closing()) continue;
    reused = true;
    return u;
  }
  reused = false;
  if (router_.backend(backend).connecting >= config_.limits.max_pending_backend) return nullptr;
  auto up = std::make_unique<UpstreamConn>(*this, backend);
  UpstreamConn* u = up.get();
  upstreams_.emplace(u, std::move(up));
  ++router_.backend(backend).connections;
  metrics_.backend_connection(backend);
  return u;
}

void Server::park_upstream(UpstreamConn* u) {
  auto& pool = idle_[static_cast<size_t>(u->backend())];
  if (stopped_ || draining_ || pool.size() >= kMaxIdlePerBackend) {
    u->detach();
    u->close();
    return;
  }
  u->park(config_.timeouts.backend_keepalive);
  pool.push_back(u);
}

void Server::unpark(UpstreamConn* u) {
  auto& pool = idle_[static_cast<size_t>(u->backend())];
  pool.erase(std::remove(pool.begin(), pool.end(), u), pool.end());
}

void Server::destroy(ClientConn* c) {
  clients_.erase(c);
  maybe_finish_drain();
}

void Server::destroy(UpstreamConn* u) {
  --router_.backend(u->backend()).connections;
  upstreams_.erase(u);
}

void Server::reload(Config next) {
  // Keep every existing backend at its index: in-flight exchanges, pooled connections, the
  // affinity table and the balancers all refer to backends by index.
  std::vector<BackendConfig> ordered = config_.backends;
  std::vector<bool> kept(ordered.size(), false);
  std::vector<BackendConfig> added;
  for (BackendConfig& b : next.backends) {
    bool found = false;
    for (size_t i = 0; i < ordered.size(); ++i) {
      if (ordered[i].name == b.name) {
        ordered[i] = b;
        kept[i] = true;
        found = true;
        break;
      }
    }
    if (!found) added.push_back(b);
  }
  size_t removed = 0;
  for (size_t i = 0; i < kept.size(); ++i)
    if (!kept[i] && !ordered[i].removed) {
      ordered[i].removed = true;
      ++removed;
    }
  for (BackendConfig& b : added) ordered.push_back(std::move(b));
  next.backends = std::move(ordered);
  std::vector<std::string> old_listen, new_listen;
  for (const ListenConfig& a : config_.listen) old_listen.push_back(a.text());
  for (const ListenConfig& a : next.listen) new_listen.push_back(a.text());
  if (old_listen != new_listen) {
    log::warn("listen addresses changed: restart to apply; keeping the current ones");
    next.listen = config_.listen;
  }
  if (next.admin.enabled != config_.admin.enabled ||
      (next.admin.enabled && next.admin.listen.text != config_.admin.listen.text)) {
    log::warn("admin listener changed: restart to apply; keeping the current one");
    next.admin = config_.admin;
  }

  // New certificates for new connections; live ones keep the context they started with.
  if (!build_tls_contexts(next)) {
    log::error("reload refused: keeping the running config");
    return;
  }
  health_->stop();
  config_ = std::move(next);
  log::set_level(config_.log_level);
  router_.reconfigure();
  metrics_.resize(config_.backends.size(), backend_names(config_));
  idle_.resize(config_.backends.size());
  for (size_t i = 0; i < config_.backends.size(); ++i) {
    if (!config_.backends[i].removed) continue;
    std::vector<UpstreamConn*> parked(idle_[i].begin(), idle_[i].end());
    for (UpstreamConn* u : parked) u->close();
  }
  // Health: fresh checks against the new settings; known states carry over until they run.
  health_ = std::make_unique<HealthChecker>(
      loop_, config_, [this](int b, Health h, const std::string& why) { on_health(b, h, why); });
  health_->start();
  log::info("config reloaded", {{"backends", config_.backends.size() - removed},
                                {"added", added.size()},
                                {"removed", removed}});
}

std::vector<BackendStatus> Server::backends() {
  std::vector<BackendStatus> out;
  int64_t now = now_ms();
  for (size_t i = 0; i < router_.backends().size(); ++i) {
    const BackendState& b = router_.backends()[i];
    if (b.config.removed) continue;
    BackendStatus s;
    s.name = b.config.name;
    s.address = b.config.address.text;
    s.state = to_string(b.admin);
    s.health = to_string(b.health);
    s.weight = b.weight;
    bool takes_new = b.admin == AdminState::Ready && b.health != Health::Down;
    s.effective_weight = takes_new ? router_.effective_weight(static_cast<int>(i), now) : 0;
    s.sessions = router_.table().sessions_of(static_cast<uint16_t>(i));
    s.connections = b.connections;
    s.tunnels = b.tunnels;
    s.requests = b.requests;
    out.push_back(std::move(s));
  }
  return out;
}

bool Server::set_state(std::string_view backend, AdminState s) {
  int b = router_.find_backend(backend);
  if (b < 0) return false;
  router_.set_admin_state(b, s);
  if (s == AdminState::Maint) {
    // No traffic at all: pooled connections and websocket tunnels to it close now (their
    // clients reconnect and are balanced elsewhere); requests in flight finish.
    std::vector<UpstreamConn*> parked(idle_[static_cast<size_t>(b)].begin(),
                                      idle_[static_cast<size_t>(b)].end());
    for (UpstreamConn* u : parked) u->close();
    std::vector<ClientConn*> tunnels;
    for (auto& [c, _] : clients_)
      if (c->tunnel_backend() == b) tunnels.push_back(c);
    for (ClientConn* c : tunnels) c->close_now();
    log::info("backend in maintenance", {{"backend", std::string(backend)},
                                         {"tunnels_closed", tunnels.size()}});
  }
  return true;
}

bool Server::set_weight(std::string_view backend, uint32_t w) {
  int b = router_.find_backend(backend);
  if (b < 0) return false;
  return router_.set_weight(b, w);
}

void Server::metrics_text(std::string& out) {
  const AffinityTable& t = router_.table();
  metrics_.set_affinity(t.size(), t.stats().learnt, t.stats().expired, t.stats().evicted,
                        t.pinned());
  std::vector<BackendStatus> status = backends();
  metrics_.render_prometheus(out, status);
}

}  // namespace stickyd
