#include <algorithm>

#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"

namespace stickyd {

namespace {
constexpr size_t kMaxIdlePerBackend = 256;
}

Server::Server(uv_loop_t* loop, const Config& config)
    : loop_(loop), config_(config), router_(config), idle_(config.backends.size()) {
  uv_timer_init(loop_, &sweep_timer_);
  sweep_timer_.data = this;
}

Server::~Server() = default;

bool Server::start() {
  for (const SocketAddress& a : config_.listen) {
    auto l = std::make_unique<Listener>(loop_, a, [this](uv_stream_t* s) { on_connection(s); });
    int r = l->start();
    if (r != 0) {
      log::error("cannot listen", {{"address", a.text}, {"error", uv_strerror(r)}});
      return false;
    }
    log::info("listening", {{"address", l->bound_address()}});
    listeners_.push_back(std::move(l));
  }
  uv_timer_start(&sweep_timer_, sweep_cb, 1000, 1000);
  return true;
}

void Server::sweep_cb(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  size_t n = self->router_.table().expire(self->now_ms());
  if (n) log::debug("sessions expired", {{"count", n}, {"table", self->router_.table().size()}});
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& l : listeners_) l->close();
  uv_timer_stop(&sweep_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  std::vector<ClientConn*> cs;
  for (auto& [p, _] : clients_) cs.push_back(p);
  for (ClientConn* c : cs) c->close();
  std::vector<UpstreamConn*> us;
  for (auto& [p, _] : upstreams_) us.push_back(p);
  for (UpstreamConn* u : us) u->close();
}

void Server::on_connection(uv_stream_t* listener) {
  auto conn = std::make_unique<ClientConn>(*this);
  ClientConn* c = conn.get();
  clients_.emplace(c, std::move(conn));
  if (uv_accept(listener, c->stream()) != 0) {
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
  auto up = std::make_unique<UpstreamConn>(*this, backend);
  UpstreamConn* u = up.get();
  upstreams_.emplace(u, std::move(up));
  return u;
}

void Server::park_upstream(UpstreamConn* u) {
  auto& pool = idle_[static_cast<size_t>(u->backend())];
  if (stopped_ || pool.size() >= kMaxIdlePerBackend) {
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

void Server::destroy(ClientConn* c) { clients_.erase(c); }
void Server::destroy(UpstreamConn* u) { upstreams_.erase(u); }

}  // namespace stickyd
