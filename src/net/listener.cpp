#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

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
    : handle_(std::make_unique<uv_tcp_t>().release()), addr_(addr), on_conn_(std::move(on_conn)) {
  uv_tcp_init(loop, handle_);
  handle_->data = this;
  open_ = true;
}

Listener::~Listener() { close(); }

namespace {
// A TCP socket bound to `addr` (SO_REUSEADDR, v6-only for IPv6, SO_REUSEPORT when asked), or
// -errno. libuv 1.44 has no SO_REUSEPORT flag, so these sockets are made here.
int bound_socket(const SocketAddress& addr, bool reuseport) {
  int fd = ::socket(addr.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (reuseport && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
      (addr.storage.ss_family == AF_INET6 &&
       ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
      ::bind(fd, addr.sa(), addr.length) != 0) {
    int e = -errno;
    ::close(fd);
    return e;
  }
  return fd;
}
}  // namespace

int Listener::start(bool reuseport) {
  int r;
  if (!reuseport) {
    unsigned flags = addr_.storage.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
    r = uv_tcp_bind(handle_, addr_.sa(), flags);
  } else {
    int fd = bound_socket(addr_, true);
    if (fd < 0) return fd;
    r = uv_tcp_open(handle_, fd);
    if (r != 0) {
      ::close(fd);
      return r;
    }
  }
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(handle_), 1024, connection_cb);
  return r;
}

int Listener::adopt(int fd) {
  int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return -errno;
  int r = uv_tcp_open(handle_, own);
  if (r != 0) {
    ::close(own);
    return r;
  }
  return uv_listen(reinterpret_cast<uv_stream_t*>(handle_), 1024, connection_cb);
}

int Listener::fd() const {
  uv_os_fd_t fd = -1;
  if (!open_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(handle_), &fd) != 0) return -1;
  return fd;
}

int Listener::claim(SocketAddress& addr) {
  // A plain (not SO_REUSEPORT) bind fails while anything else holds the address, even
  // another process's SO_REUSEPORT group: so two proxies never silently share a port.
  int fd = bound_socket(addr, false);
  if (fd < 0) return fd;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in*>(&addr.storage)->sin_port =
          reinterpret_cast<sockaddr_in*>(&ss)->sin_port;
    else if (ss.ss_family == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&addr.storage)->sin6_port =
          reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port;
  }
  ::close(fd);
  return 0;
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
  // The handle is freed by its close callback, after this object may be gone.
  close_and_free(handle_);
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
