#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>

#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/tls.hpp"
#include "stickyd/write_batch.hpp"

namespace stickyd {

namespace {
constexpr size_t kMaxIdlePerBackend = 256;

std::vector<std::string> backend_names(const Config& cfg) {
  std::vector<std::string> names;
  for (const BackendConfig& b : cfg.backends) names.push_back(b.name);
  return names;
}
}  // namespace

Server::Server(uv_loop_t* loop, Config config, SharedState& shared, size_t worker)
    : loop_(loop),
      shared_(shared),
      worker_(worker),
      config_(std::move(config)),
      router_(config_, shared.table),
      metrics_(config_.backends.size(), backend_names(config_)),
      idle_(config_.backends.size()) {
  if (shared_.workers() > 1) router_.share_balancer(shared_.balancer);
  uv_timer_init(loop_, &sweep_timer_);
  uv_timer_init(loop_, &grace_timer_);
  uv_timer_init(loop_, &spread_timer_);
  uv_timer_init(loop_, &ticket_timer_);
  uv_timer_init(loop_, &evict_timer_);
  evict_timer_.data = this;
  sweep_timer_.data = this;
  grace_timer_.data = this;
  spread_timer_.data = this;
  ticket_timer_.data = this;
  health_ = std::make_unique<HealthChecker>(
      loop_, config_, [this](int b, Health h, const std::string& why) { on_health(b, h, why); });
}

Server::~Server() { WriteBatch::close(std::move(write_batch_)); }

void Server::apply_batch_writes() {
  if (!config_.batch_writes) {
    WriteBatch::close(std::move(write_batch_));  // what is staged goes out first
    return;
  }
  if (write_batch_) return;
  std::string why;
  write_batch_ = WriteBatch::create(loop_, why);
  if (write_batch_) {
    write_batch_->attach();
    return;
  }
  // Once per process: every worker would say the same.
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    log::info("io_uring unavailable: each write is its own syscall (batch_writes has no effect)",
              {{"reason", why}});
}

bool Server::build_tls_contexts(const Config& cfg) {
  if (worker_ != 0) {
    // One set of contexts for every worker: one session cache and one ticket key ring, so a
    // session resumes on whichever worker the kernel hands the new connection to.
    std::lock_guard lock(shared_.tls_mu);
    listener_tls_ = shared_.listener_tls;
    backend_tls_ = shared_.backend_tls;
    return true;
  }
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
  std::lock_guard lock(shared_.tls_mu);
  shared_.listener_tls = listener_tls_;
  shared_.backend_tls = backend_tls_;
  return true;
}

void Server::ticket_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  for (auto& c : self->listener_tls_)
    if (c) c->rotate_ticket_keys();
}

void Server::inherit(const std::vector<std::vector<std::vector<int>>>& per_listen, int admin_fd) {
  inherited_.assign(config_.listen.size(), {});
  for (size_t i = 0; i < per_listen.size() && i < inherited_.size(); ++i)
    if (worker_ < per_listen[i].size()) inherited_[i] = per_listen[i][worker_];
  inherited_admin_ = admin_fd;
}

bool Server::start() {
  if (!build_tls_contexts(config_)) return false;
  apply_batch_writes();
  inherited_.resize(config_.listen.size());
  for (size_t i = 0; i < config_.listen.size(); ++i) {
    const SocketAddress& a = config_.listen[i].address;
    auto listener = [this, i, &a] {
      return std::make_unique<Listener>(loop_, a, [this, i](uv_stream_t* s) { on_connection(i, s); });
    };
    std::vector<int> adopt = inherited_[i];
    if (adopt.empty()) adopt.push_back(-1);  // -1: bind one
    for (int fd : adopt) {
      auto l = listener();
      int r = fd >= 0 ? l->adopt(fd) : l->start(shared_.workers() > 1);
      if (r != 0) {
        log::error(fd >= 0 ? "cannot listen on an inherited socket" : "cannot listen",
                   {{"address", a.text}, {"error", uv_strerror(r)}});
        return false;
      }
      listeners_.push_back(std::move(l));
      listener_entry_.push_back(i);
    }
  }
  Millis rotation{0};
  for (const ListenConfig& lc : config_.listen)
    if (lc.tls && lc.tls->session_tickets && (rotation.count() == 0 || lc.tls->ticket_key_rotation < rotation))
      rotation = lc.tls->ticket_key_rotation;
  shared_.mailboxes[worker_]->open(loop_, *this);
  if (worker_ != 0) return true;  // what follows exists once, on worker 0
  if (rotation.count() > 0)
    uv_timer_start(&ticket_timer_, ticket_cb, static_cast<uint64_t>(rotation.count()),
                   static_cast<uint64_t>(rotation.count()));
  if (config_.admin.enabled) {
    admin_ = std::make_unique<AdminServer>(loop_, config_.admin, *this);
    int r = admin_->start(inherited_admin_);
    if (r != 0) {
      log::error("cannot listen (admin)",
                 {{"address", config_.admin.listen.text}, {"error", uv_strerror(r)}});
      return false;
    }
  }
  health_->start();
  uv_timer_start(&sweep_timer_, sweep_cb, 1000, 1000);
  if (!config_.discover.empty()) {
    discovery_ = std::make_unique<Discovery>(loop_, [this] { on_discovery_change(); });
    discovery_->configure(config_);
  }
  return true;
}

void Server::add_discovered(Config& next) {
  if (next.discover.empty()) {
    discovery_.reset();
    return;
  }
  if (!discovery_) discovery_ = std::make_unique<Discovery>(loop_, [this] { on_discovery_change(); });
  discovery_->configure(next);
  for (BackendConfig& b : discovery_->backends(next)) next.backends.push_back(std::move(b));
}

void Server::on_discovery_change() {
  Config next = config_;
  next.backends.clear();
  for (const BackendConfig& b : config_.backends)
    if (!b.removed && b.discover < 0) next.backends.push_back(b);
  for (BackendConfig& b : discovery_->backends(config_)) next.backends.push_back(std::move(b));
  if (!reload(next, nullptr)) return;
  // Every worker runs with the new set before it is announced (and before drains apply): a
  // client accepted by another worker right after the line must not find the old set.
  for (size_t k = 1; k < shared_.workers(); ++k)
    shared_.mailboxes[k]->call([next](Server& s) { s.reload(next, nullptr); }, std::chrono::seconds(1));
  log::info("backends discovered", {{"backends", last_reload_.backends},
                                    {"added", last_reload_.added},
                                    {"removed", last_reload_.removed}});
  apply_discovery_drains();
  if (on_backends_changed) on_backends_changed();
}

void Server::apply_discovery_drains() {
  for (size_t i = 0; i < config_.backends.size(); ++i) {
    const BackendConfig& b = config_.backends[i];
    auto mine = std::find(dns_drained_.begin(), dns_drained_.end(), b.name);
    bool draining = !b.removed && b.discover >= 0 && discovery_ && discovery_->draining(b.name);
    if (draining && mine == dns_drained_.end()) {
      if (router_.backend(static_cast<int>(i)).admin == AdminState::Ready) {
        dns_drained_.push_back(b.name);
        set_state(b.name, AdminState::Drain);
        // A pod leaves DNS before it stops: move its sessions off at a steady pace now
        // rather than all at once when it dies.
        Millis over = config_.discover[static_cast<size_t>(b.discover)].evict_over;
        if (over.count() > 0) start_eviction(static_cast<int>(i), over, "left DNS");
      }
    } else if (!draining && mine != dns_drained_.end()) {
      dns_drained_.erase(mine);
      // Back in DNS: ready again, unless an operator changed its state meanwhile.
      if (!b.removed && router_.backend(static_cast<int>(i)).admin == AdminState::Drain)
        set_state(b.name, AdminState::Ready);
    }
  }
}

void Server::expire_discovered() {
  if (!discovery_) return;
  auto index_of = [this](const std::string& name) { return router_.find_backend(name); };
  auto idle = [&](const std::string& name) {
    int b = index_of(name);
    if (b < 0) return true;
    // Sessions are shared (the table); tunnels and requests in flight count on every worker,
    // and pinned sessions stay in the table while their tunnel lives.
    return router_.table().sessions_of(static_cast<uint16_t>(b)) == 0 &&
           router_.backend(b).tunnels == 0 && router_.backend(b).in_flight == 0;
  };
  auto down = [&](const std::string& name) {
    int b = index_of(name);
    return b >= 0 && router_.backend(b).health == Health::Down;
  };
  if (discovery_->expire(now_ms(), idle, down)) on_discovery_change();
}

void Server::log_listening() const {
  for (size_t k = 0; k < listeners_.size(); ++k) {
    size_t i = listener_entry_[k];
    if (k > 0 && listener_entry_[k - 1] == i) continue;  // one line per listen entry
    log::info("listening", {{"address", listeners_[k]->bound_address()},
                            {"tls", config_.listen[i].tls ? "yes" : "no"},
                            {"workers", shared_.workers()},
                            {"inherited", inherited_[i].empty() ? "no" : "yes"}});
  }
}

void Server::sweep_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  size_t n = self->router_.table().expire(self->now_ms());
  if (n) log::debug("sessions expired", {{"count", n}, {"table", self->router_.table().size()}});
  self->expire_discovered();
  log::flush_suppressed();
}

void Server::on_health(int backend, Health h, const std::string& reason) {
  bool was_down = router_.backend(backend).health == Health::Down;
  apply_health(backend, h);
  if (h != Health::Unchecked) metrics_.health_transition(backend, h == Health::Up);
  broadcast([backend, h](Server& s) { s.apply_health(backend, h); });
  // Down while it still answers (its checks fail with a status): its sessions keep routing to
  // it until their turn in a paced eviction, so its clients move off at a steady pace, not in
  // one burst. Unreachable: nothing to pace, its sessions get Engine.IO's 400 at once.
  Millis over = config_.health.evict_over;
  Eviction* e = eviction_of(backend);
  bool running = e && !e->done();
  if (h == Health::Down && !was_down && over.count() > 0 && !running &&
      HealthChecker::answered(reason)) {
    set_paced_down(backend, true);
    start_eviction(backend, over, "health down");
  } else if (h == Health::Up && running && std::string_view(e->cause) == "health down") {
    end_eviction(*e, /*cancelled=*/true);
  }
}

void Server::set_paced_down(int backend, bool on) {
  router_.backend(backend).paced_down = on;
  broadcast([backend, on](Server& s) { s.router().backend(backend).paced_down = on; });
}

void Server::apply_health(int backend, Health h) { router_.set_health(backend, h, now_ms()); }

void Server::connect_result(int backend, bool ok) {
  if (!ok) metrics_.backend_connect_failed(backend);
  if (worker_ == 0) report_traffic(backend, ok);
  else shared_.mailboxes[0]->post([backend, ok](Server& s) { s.report_traffic(backend, ok); });
}

void Server::report_traffic(int backend, bool ok) {
  // A node being evicted at a pace because it failed its checks stopped answering too: its
  // remaining sessions are told to re-handshake at once.
  if (!ok && router_.backend(backend).paced_down)
    if (Eviction* e = eviction_of(backend); e && !e->done()) end_eviction(*e, /*cancelled=*/true);
  if (health_) health_->report_traffic(backend, ok);
}

void Server::broadcast(std::function<void(Server&)> task) {
  for (size_t k = 0; k < shared_.workers(); ++k)
    if (k != worker_) shared_.mailboxes[k]->post(task);
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  shared_.mailboxes[worker_]->close();  // lets this worker's loop end
  for (auto& l : listeners_) l->close();
  if (admin_) admin_->stop();
  if (health_) health_->stop();
  discovery_.reset();
  uv_timer_stop(&sweep_timer_);
  uv_timer_stop(&grace_timer_);
  uv_timer_stop(&spread_timer_);
  uv_timer_stop(&ticket_timer_);
  uv_timer_stop(&evict_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&evict_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&spread_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ticket_timer_), nullptr);
  std::vector<ClientConn*> cs;
  for (auto& [p, _] : clients_) cs.push_back(p);
  for (ClientConn* c : cs) c->close();
  std::vector<UpstreamConn*> us;
  for (auto& [p, _] : upstreams_) us.push_back(p);
  for (UpstreamConn* u : us) u->close();
  WriteBatch::close(std::move(write_batch_));  // after the connections wrote what they staged
}

void Server::drain(Millis grace) {
  if (draining_ || stopped_) return;
  draining_ = true;
  for (auto& l : listeners_) l->close();
  // Workers::drain drains worker 0 last, so its line means every listener is closed.
  log::write(worker_ == 0 ? LogLevel::Info : LogLevel::Debug, "draining",
             {{"connections", clients_.size()}, {"grace_ms", grace.count()}, {"worker", worker_}});
  // An idle keep-alive connection is not closed now: the client may be sending a request on
  // it at this very moment. Each response from now on carries Connection: close, and one that
  // stays idle closes after timeouts.drain_idle from its last response (ClientConn::drain).
  std::vector<ClientConn*> idle;
  for (auto& [p, _] : clients_)
    if (p->idle()) idle.push_back(p);
  for (ClientConn* c : idle) c->drain();
  for (auto& pool : idle_) {
    std::vector<UpstreamConn*> parked(pool.begin(), pool.end());
    for (UpstreamConn* u : parked) u->close();
  }
  // Tunnels close spread over the last close_spread of the grace, not in one burst that
  // would make every client reconnect (to the next instance) in the same second.
  int64_t window = std::min(config_.timeouts.close_spread.value_or(grace), grace).count();
  grace_end_ms_ = now_ms() + grace.count();
  uv_timer_start(&spread_timer_, spread_cb, static_cast<uint64_t>(grace.count() - window), 0);
  uv_timer_start(&grace_timer_, grace_cb, static_cast<uint64_t>(grace.count()), 0);
  maybe_finish_drain();
}

void Server::hand_over() {
  if (admin_) admin_->stop_listening();
}

void Server::spread_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  if (self->spreading_) self->close_due_tunnels();
  else self->start_close_spread();
}

void Server::start_close_spread() {
  spreading_ = true;
  for (auto& [c, _] : clients_)
    if (c->tunnel_backend() >= 0) spread_left_.insert(c);
  int64_t now = now_ms();
  int64_t window = std::max<int64_t>(grace_end_ms_ - now, 0);
  if (spread_left_.empty()) return;  // nothing to spread: no line
  spread_ = PacedSchedule(now, window, spread_left_.size());
  log::info("closing tunnels spread over the end of the grace",
            {{"tunnels", spread_left_.size()}, {"window_ms", window}, {"worker", worker_}});
  close_due_tunnels();
}

void Server::close_due_tunnels() {
  // Tunnels that ended on their own count as gone (destroy() forgets them; one closing
  // meanwhile is no longer a tunnel).
  for (auto it = spread_left_.begin(); it != spread_left_.end();)
    it = (*it)->tunnel_backend() < 0 ? spread_left_.erase(it) : std::next(it);
  int64_t now = now_ms();
  size_t n = spread_.to_close(now, spread_.total() - spread_left_.size());
  for (; n > 0 && !spread_left_.empty(); --n) {
    ClientConn* c = *spread_left_.begin();
    spread_left_.erase(spread_left_.begin());
    c->close_now();
  }
  int64_t next = spread_.next_due(now);
  if (next >= 0 && !spread_left_.empty())
    uv_timer_start(&spread_timer_, spread_cb, static_cast<uint64_t>(next - now), 0);
}

void Server::grace_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  log::warn("grace time over: closing what is left",
            {{"connections", self->clients_.size()}, {"worker", self->worker_}});
  self->stop();
}

void Server::maybe_finish_drain() {
  if (draining_ && !stopped_ && clients_.empty()) {
    log::info("drained", {{"worker", worker_}});
    stop();
  }
}

bool Server::admit(const std::string& ip) {
  uint32_t limit = config_.limits.max_connections_per_ip;
  std::lock_guard lock(shared_.ip_mu);
  uint32_t& n = shared_.per_ip[ip];
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
  std::lock_guard lock(shared_.ip_mu);
  auto it = shared_.per_ip.find(ip);
  if (it != shared_.per_ip.end() && --it->second == 0) shared_.per_ip.erase(it);
}

std::vector<std::pair<size_t, int>> Server::listening_fds() const {
  std::vector<std::pair<size_t, int>> out;
  for (size_t k = 0; k < listeners_.size(); ++k)
    if (int fd = listeners_[k]->fd(); fd >= 0) out.emplace_back(listener_entry_[k], fd);
  return out;
}

int Server::admin_fd() const { return admin_ ? admin_->listener_fd() : -1; }

void Server::on_connection(size_t index, uv_stream_t* listener) {
  const ListenConfig& lc = config_.listen[index];
  bool secure_cookies = lc.tls && lc.tls->secure_cookies;
  Millis handshake_timeout = lc.tls ? lc.tls->handshake_timeout : Millis(0);
  auto conn = std::make_unique<ClientConn>(*this, listener_tls_[index], secure_cookies,
                                           handshake_timeout);
  ClientConn* c = conn.get();
  clients_.emplace(c, std::move(conn));
  size_t open = shared_.clients.fetch_add(1, std::memory_order_relaxed) + 1;
  metrics_.client_opened();
  if (uv_accept(listener, c->stream()) != 0) {
    c->close();
    return;
  }
  if (open > config_.limits.max_connections) {
    // Over the limit: accepted only to be closed, so the backlog does not fill up; the
    // connections already open are served as before. Logged at most once a second.
    ++refused_;
    if (now_ms() - last_refusal_log_ms_ >= 1000) {
      log::warn("connection refused: max_connections reached",
                {{"open", open - 1}, {"refused_total", refused_}});
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
  spread_left_.erase(c);
  if (clients_.erase(c)) shared_.clients.fetch_sub(1, std::memory_order_relaxed);
  maybe_finish_drain();
}

void Server::destroy(UpstreamConn* u) {
  --router_.backend(u->backend()).connections;
  upstreams_.erase(u);
}

bool Server::reload(Config next, const char* event) {
  // Keep every existing backend at its index: in-flight exchanges, pooled connections, the
  // affinity table and the balancers all refer to backends by index.
  std::vector<BackendConfig> ordered = config_.backends;
  std::vector<bool> kept(ordered.size(), false);
  const size_t first_new = ordered.size();     // appended slots start here
  std::vector<bool> revived(ordered.size() + next.backends.size(), false);  // removed, back
  std::vector<BackendConfig> added;
  std::vector<size_t> moved;  // same backend, new address (a discovered pod that restarted)
  for (BackendConfig& b : next.backends) {
    bool found = false;
    for (size_t i = 0; i < ordered.size(); ++i) {
      if (ordered[i].name == b.name) {
        if (ordered[i].removed) revived[i] = true;
        else if (ordered[i].address.text != b.address.text) moved.push_back(i);
        ordered[i] = b;
        kept[i] = true;
        found = true;
        break;
      }
    }
    if (!found) added.push_back(b);
  }
  // Slots are never reused while stickyd runs (requests in flight, pooled connections and the
  // table refer to backends by index): past the table's bound, only a restart makes room.
  if (ordered.size() + added.size() > AffinityTable::kMaxBackends) {
    if (worker_ == 0)
      log::error("too many backends since start: restart stickyd to apply this change",
                 {{"slots", ordered.size()}, {"adding", added.size()},
                  {"max", AffinityTable::kMaxBackends}});
    return false;
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
    if (worker_ == 0) log::warn("listen addresses changed: restart to apply; keeping the current ones");
    next.listen = config_.listen;
  }
  if (next.admin.enabled != config_.admin.enabled ||
      (next.admin.enabled && next.admin.listen.text != config_.admin.listen.text)) {
    if (worker_ == 0) log::warn("admin listener changed: restart to apply; keeping the current one");
    next.admin = config_.admin;
  }

  // New certificates for new connections; live ones keep the context they started with.
  if (!build_tls_contexts(next)) {
    log::error("reload refused: keeping the running config");
    return false;
  }
  health_->stop();
  config_ = std::move(next);
  log::set_level(config_.log_level);
  log::set_rate_limit(config_.log_rate_limit);
  router_.reconfigure();
  apply_batch_writes();
  metrics_.resize(config_.backends.size(), backend_names(config_));
  idle_.resize(config_.backends.size());
  for (size_t i = 0; i < config_.backends.size(); ++i) {
    bool gone = config_.backends[i].removed || std::find(moved.begin(), moved.end(), i) != moved.end();
    if (!gone) continue;
    std::vector<UpstreamConn*> parked(idle_[i].begin(), idle_[i].end());
    for (UpstreamConn* u : parked) u->close();  // never reused towards the old address
  }
  // Health: checks against the new settings; what the old checker knew carries over (counts
  // included), except for new slots and new addresses. A backend discovery just found waits
  // for its first successful check before it gets sessions (when checks are on).
  std::vector<size_t> fresh(moved.begin(), moved.end()), await_check;
  for (size_t i = 0; i < config_.backends.size(); ++i) {
    bool is_new = i >= first_new || revived[i];
    if (is_new) fresh.push_back(i);
    if ((is_new || std::find(moved.begin(), moved.end(), i) != moved.end()) &&
        config_.backends[i].discover >= 0 && config_.health.enabled) {
      await_check.push_back(i);
      router_.set_health(static_cast<int>(i), Health::Down, now_ms());
      if (worker_ == 0)
        log::info("backend waits for its first health check", {{"backend", config_.backends[i].name}});
    }
  }
  std::unique_ptr<HealthChecker> previous = std::move(health_);  // stopped above
  health_ = std::make_unique<HealthChecker>(
      loop_, config_, [this](int b, Health h, const std::string& why) { on_health(b, h, why); });
  health_->carry_over(*previous, fresh, await_check);
  previous.reset();
  if (worker_ != 0) return true;
  health_->start();
  last_reload_ = {config_.backends.size() - removed, added.size(), removed};
  if (event)
    log::info(event, {{"backends", last_reload_.backends}, {"added", last_reload_.added},
                      {"removed", last_reload_.removed}});
  return true;
}

Server::Counts Server::counts() const {
  Counts c{metrics_, {}, worker_};
  for (const BackendState& b : router_.backends()) {
    BackendStatus st;
    st.connections = b.connections;
    st.tunnels = b.tunnels;
    st.requests = b.requests;
    c.backends.push_back(st);
  }
  return c;
}

std::vector<Server::Counts> Server::gather_counts() {
  // Each worker copies its own counters on its own thread; this one waits for each in turn.
  // Only the admin API calls this (rarely), so a short wait on the main loop is acceptable; it
  // is bounded in case a worker is stopping and no longer reads its mailbox.
  std::vector<Counts> out;
  for (size_t k = 0; k < shared_.workers(); ++k) {
    if (k == worker_) continue;
    auto c = std::make_shared<Counts>();  // the task keeps it alive if the wait times out
    if (shared_.mailboxes[k]->call([c](Server& s) { *c = s.counts(); }, std::chrono::seconds(1)))
      out.push_back(std::move(*c));
  }
  return out;
}

std::vector<BackendStatus> Server::backends() { return backends(gather_counts()); }

std::vector<BackendStatus> Server::backends(const std::vector<Counts>& others) {
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
    if (const Eviction* e = eviction_of(static_cast<int>(i))) {
      s.has_eviction = true;
      s.eviction.over_ms = e->over_ms;
      s.eviction.elapsed_ms = (e->done() ? e->ended_ms : now) - e->schedule.start();
      s.eviction.total = e->schedule.total();
      s.eviction.evicted = e->evicted;
      s.eviction.gone = e->gone;
      s.eviction.done = e->done();
      s.eviction.cancelled = e->cancelled;
    }
    if (b.config.discover >= 0 && static_cast<size_t>(b.config.discover) < config_.discover.size()) {
      s.discovered_by = config_.discover[static_cast<size_t>(b.config.discover)].name;
      s.identity = b.config.identity;
      s.in_dns = !(discovery_ && discovery_->draining(b.config.name));
    }
    for (const Counts& c : others) {
      if (i >= c.backends.size()) continue;  // that worker has not applied a reload yet
      s.connections += c.backends[i].connections;
      s.tunnels += c.backends[i].tunnels;
      s.requests += c.backends[i].requests;
    }
    out.push_back(std::move(s));
  }
  return out;
}

bool Server::set_state(std::string_view backend, AdminState s) {
  int b = router_.find_backend(backend);
  if (b < 0) return false;
  if (s != AdminState::Drain)
    if (Eviction* e = eviction_of(b); e && !e->done()) end_eviction(*e, /*cancelled=*/true);
  apply_state(b, s);
  broadcast([b, s](Server& w) { w.apply_state(b, s); });
  return true;
}

void Server::apply_state(int b, AdminState s) {
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
    log::info("backend in maintenance",
              {{"backend", router_.backend(b).config.name}, {"tunnels_closed", tunnels.size()},
               {"worker", worker_}});
  }
}

bool Server::evict(std::string_view backend, Millis over) {
  int b = router_.find_backend(backend);
  if (b < 0) return false;
  set_state(backend, AdminState::Drain);  // no new sessions from now on
  start_eviction(b, over);
  return true;
}

Server::Eviction* Server::eviction_of(int backend) {
  for (Eviction& e : evictions_)
    if (e.backend == backend) return &e;
  return nullptr;
}

void Server::start_eviction(int backend, Millis over, const char* cause) {
  Eviction* e = eviction_of(backend);
  if (!e) e = &evictions_.emplace_back();
  *e = Eviction{};  // a new request restarts the pacing on what is left
  e->backend = backend;
  e->cause = cause;
  e->over_ms = over.count();
  e->sids = router_.table().sessions_of_backend(static_cast<uint16_t>(backend));
  // Random order: no client (e.g. the oldest) is always the first to move.
  std::shuffle(e->sids.begin(), e->sids.end(), std::mt19937_64(std::random_device{}()));
  e->schedule = PacedSchedule(now_ms(), e->over_ms, e->sids.size());
  log::info("backend eviction started", {{"backend", router_.backend(backend).config.name},
                                         {"sessions", e->sids.size()},
                                         {"over_ms", e->over_ms},
                                         {"cause", cause}});
  run_evictions();
}

void Server::end_eviction(Eviction& e, bool cancelled) {
  e.ended_ms = now_ms();
  e.cancelled = cancelled;
  if (router_.backend(e.backend).paced_down) set_paced_down(e.backend, false);
  std::vector<std::string>().swap(e.sids);
  log::info(cancelled ? "backend eviction cancelled" : "backend eviction done",
            {{"backend", router_.backend(e.backend).config.name}, {"evicted", e.evicted},
             {"left_on_their_own", e.gone}, {"ms", e.ended_ms - e.schedule.start()}});
}

void Server::evict_cb(uv_timer_t* t) { static_cast<Server*>(t->data)->run_evictions(); }

void Server::run_evictions() {
  AffinityTable& table = router_.table();
  int64_t now = now_ms();
  int64_t wake = -1;
  for (Eviction& e : evictions_) {
    if (e.done()) continue;
    if (router_.backend(e.backend).config.removed) {  // a reload forgot its sessions
      end_eviction(e, /*cancelled=*/true);
      continue;
    }
    // Sessions that left on their own (closed, expired, re-pointed) count as gone: the
    // rate of reconnects stays bounded by total / window whatever the clients do.
    uint64_t not_evicted = e.schedule.total() - e.evicted;
    e.gone = not_evicted - std::min<uint64_t>(table.sessions_of(static_cast<uint16_t>(e.backend)),
                                              not_evicted);
    size_t n = e.schedule.next_due(now) < 0 ? SIZE_MAX : e.schedule.to_close(now, e.evicted + e.gone);
    std::vector<std::string> due;
    while (n > 0 && e.next < e.sids.size()) {
      std::string& sid = e.sids[e.next++];
      if (!table.mark_evicted(sid, static_cast<uint16_t>(e.backend))) continue;  // had left
      ++e.evicted;
      --n;
      due.push_back(std::move(sid));
    }
    if (!due.empty()) {
      size_t closed = close_sessions_of(due);
      log::debug("sessions evicted", {{"backend", router_.backend(e.backend).config.name},
                                      {"count", due.size()}, {"tunnels_closed", closed}});
      auto shared = std::make_shared<const std::vector<std::string>>(std::move(due));
      broadcast([shared](Server& s) { s.close_sessions_of(*shared); });
    }
    if (e.next == e.sids.size()) {
      e.gone = e.schedule.total() - e.evicted;
      end_eviction(e, /*cancelled=*/false);
      continue;
    }
    int64_t at = e.schedule.next_due(now);
    if (at < 0) at = now;
    wake = wake < 0 ? at : std::min(wake, at);
  }
  // At least 10 ms apart: at high rates a tick takes a batch (one message per worker).
  if (wake >= 0)
    uv_timer_start(&evict_timer_, evict_cb, static_cast<uint64_t>(std::max<int64_t>(wake - now, 10)), 0);
}

void Server::tunnel_opened(ClientConn* c, const std::string& sid) { tunnels_by_sid_.emplace(sid, c); }

void Server::tunnel_closed(ClientConn* c, const std::string& sid) {
  auto [first, last] = tunnels_by_sid_.equal_range(sid);
  for (auto it = first; it != last; ++it)
    if (it->second == c) {
      tunnels_by_sid_.erase(it);
      return;
    }
}

size_t Server::close_sessions_of(const std::vector<std::string>& sids) {
  std::vector<ClientConn*> found;
  for (const std::string& sid : sids) {
    auto [first, last] = tunnels_by_sid_.equal_range(sid);
    for (auto it = first; it != last; ++it) found.push_back(it->second);
  }
  // A polling session waits in a held GET for up to pingInterval: closed too, its client
  // reconnects at its turn rather than at its next ping (which clients that connected
  // together send together). Nothing is lost: the session is evicted anyway.
  std::unordered_set<std::string_view> due(sids.begin(), sids.end());
  for (auto& [c, _] : clients_)
    if (std::string_view sid = c->held_poll_sid(); !sid.empty() && due.count(sid)) found.push_back(c);
  for (ClientConn* c : found) c->close_now();  // unregisters itself
  return found.size();
}

bool Server::set_weight(std::string_view backend, uint32_t w) {
  int b = router_.find_backend(backend);
  if (b < 0) return false;
  if (!router_.set_weight(b, w)) return false;
  broadcast([b, w](Server& s) { s.router().set_weight(b, w); });
  return true;
}

void Server::metrics_text(std::string& out) {
  const AffinityTable& t = router_.table();
  std::vector<Counts> others = gather_counts();
  std::vector<BackendStatus> status = backends(others);
  Metrics total = metrics_;
  for (const Counts& c : others) total.add(c.metrics);
  total.set_affinity(t.size(), t.stats().learnt, t.stats().expired, t.stats().evicted,
                     t.pinned());
  total.render_prometheus(out, status);
  // Which worker accepted how many connections (SO_REUSEPORT spreads them).
  out += "# HELP stickyd_worker_connections_total Client connections accepted, by worker.\n"
         "# TYPE stickyd_worker_connections_total counter\n";
  std::vector<uint64_t> per_worker(shared_.workers(), 0);
  per_worker[worker_] = metrics_.clients_total();
  for (const Counts& c : others)
    if (c.worker < per_worker.size()) per_worker[c.worker] = c.metrics.clients_total();
  for (size_t k = 0; k < per_worker.size(); ++k)
    out += "stickyd_worker_connections_total{worker=\"" + std::to_string(k) + "\"} " +
           std::to_string(per_worker[k]) + "\n";
}

}  // namespace stickyd
