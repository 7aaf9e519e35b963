#include <arpa/inet.h>

#include <memory>

#include "stickyd/log.hpp"
#include "stickyd/net.hpp"

namespace stickyd {

std::string format_address(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    uv_ip4_name(in, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    uv_ip6_name(in6, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

std::string peer_ip(const uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char ip[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET)
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), ip, sizeof ip);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), ip, sizeof ip);
  return ip;
}

Listener::Listener(uv_loop_t* loop, const SocketAddress& addr,
                   std::function<void(uv_stream_t*)> on_conn)
    : handle_(new uv_tcp_t), addr_(addr), on_conn_(std::move(on_conn)) {
  uv_tcp_init(loop, handle_);
  handle_->data = this;
  open_ = true;
}

Listener::~Listener() { close(); }

int Listener::start() {
  unsigned flags = addr_.storage.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
  int r = uv_tcp_bind(handle_, addr_.sa(), flags);
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(handle_), 1024, connection_cb);
  return r;
}

std::string Listener::bound_address() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(handle_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return addr_.text;
  return format_address(reinterpret_cast<sockaddr*>(&ss));
}

void Listener::close() {
  if (!open_) return;
  open_ = false;
  handle_->data = nullptr;
  // The handle is freed by its close callback, after this object may be gone.
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* h) { std::unique_ptr<uv_tcp_t> owned(reinterpret_cast<uv_tcp_t*>(h)); });
}

void Listener::connection_cb(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (!self) return;
  if (status < 0) {
    log::warn("accept failed", {{"error", uv_strerror(status)}});
    return;
  }
  self->on_conn_(server);
}

}  // namespace stickyd
