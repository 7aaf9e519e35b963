// Sockets on the libuv loop: a TCP listener and a connection base class that owns its
// uv_tcp_t and one deadline timer, writes without unbounded buffering, and is destroyed only
// after libuv has closed both handles.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "stickyd/config.hpp"

namespace stickyd {

// A libuv handle allocated on the heap because it must outlive its owner until libuv is done
// with it: closes it and frees it from its close callback; `h` becomes null, and its `data`
// is cleared first so a callback still queued finds no owner. No-op on null.
template <typename Handle>
void close_and_free(Handle*& h) {
  if (!h) return;
  Handle* handle = h;
  h = nullptr;
  handle->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle),
           [](uv_handle_t* x) { std::unique_ptr<Handle> owned(reinterpret_cast<Handle*>(x)); });
}

namespace tls {
class Session;
}

// All reads on a loop land in one shared buffer: a connection keeps no read buffer of its
// own, so an idle keep-alive connection or websocket tunnel costs no buffer memory. Whatever
// must outlive the read callback is copied by its consumer.
constexpr size_t kReadBufferSize = 64 * 1024;

// Above this many queued bytes, a connection stops reading from its peer (backpressure).
constexpr size_t kHighWater = 64 * 1024;

class WriteBatch;

class Socket {
 public:
  explicit Socket(uv_loop_t* loop);
  virtual ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  uv_loop_t* loop() { return tcp_.loop; }

  // Sends the buffers in order. What the kernel does not take at once is copied into one
  // queued write. Returns false when the socket is already broken.
  bool send(const uv_buf_t* bufs, unsigned count);
  bool send(std::string_view bytes);
  // Coalescing: from cork() until uncork() (or close() / shutdown_write()), small sends are
  // gathered and written as one, so a response head and its first body bytes leave in one
  // write(2). One corked socket per loop at a time (cork() is a no-op while another one is
  // corked). Whoever corks uncorks before its libuv callback returns; the read and timer
  // callbacks uncork whatever is left as a safety net.
  void cork();
  void uncork();
  size_t queued_bytes() const { return queued_; }
  bool write_backlogged() const { return queued_ > kHighWater; }

  void start_reading();
  void stop_reading();
  bool reading() const { return reading_; }

  // Zero-copy tunnel (Linux splice(2)) between two plain TCP sockets with nothing buffered
  // (no TLS, no queued or corked bytes, no EOF yet). From then on libuv neither reads nor
  // writes either socket: their fds are polled directly and each direction moves bytes
  // socket -> pipe -> socket inside the kernel. A pipe is borrowed from a small per-thread
  // pool only while its direction has bytes in flight, so idle tunnels hold none. Events
  // keep their meaning: on_spliced() (instead of on_read), on_eof() once the direction's
  // bytes are all written, on_read_error(), on_write_error(); shutdown_write() and close()
  // work as before. false: nothing changed (the copy path goes on). A tunnel whose splice
  // turns out unsupported (EINVAL, ENOSYS, no pipe) before any byte moved goes back to the
  // copy path by itself and calls on_drained() on both sockets to restart reading.
  static bool splice_join(Socket& a, Socket& b);
  bool spliced() const { return splice_ != nullptr; }

  // Half-close once queued writes are flushed.
  void shutdown_write();
  // Closes both handles (idempotent); on_closed() runs after libuv released them.
  void close();
  bool closing() const { return closing_; }

  void set_deadline(Millis after);
  void clear_deadline();

  // From now on bytes on the wire are TLS: reads are decrypted before on_read(), sends are
  // encrypted. A client session sends its ClientHello at once.
  void use_tls(std::unique_ptr<tls::Session> session, bool client);
  const tls::Session* tls() const { return tls_.get(); }

 protected:
  virtual void on_read(const char* data, size_t len) = 0;
  virtual void on_eof() = 0;
  virtual void on_read_error(int status) = 0;
  virtual void on_write_error(int status) = 0;
  virtual void on_drained() {}  // queued writes fell back to 0 bytes
  // Splice mode's on_read(): `n` bytes read from this socket are on their way to the peer.
  virtual void on_spliced(size_t n) { (void)n; }
  virtual void on_deadline() = 0;
  virtual void on_closed() = 0;  // last call on this object; the owner may destroy it
  // TLS failed (bad handshake, plain HTTP on a TLS port, ...): `why` is OpenSSL's reason.
  // Default: close.
  virtual void on_tls_error(const std::string& why) { (void)why; close(); }
  virtual void on_tls_established() {}  // the handshake just finished

 private:
  friend class WriteBatch;  // stages, takes back and reports this socket's batched writes
  struct QueuedWrite;
  struct Splice;
  static void alloc_cb(uv_handle_t*, size_t, uv_buf_t*);
  static void read_cb(uv_stream_t*, ssize_t, const uv_buf_t*);
  static void write_cb(uv_write_t*, int);
  static void shutdown_cb(uv_shutdown_t*, int);
  static void timer_cb(uv_timer_t*);
  static void close_cb(uv_handle_t*);

  bool raw_send(const uv_buf_t* bufs, unsigned count);
  // One write(2) now (when `try_first` and nothing is queued), the rest copied onto libuv's
  // write queue. false: the socket is broken.
  bool direct_send(const uv_buf_t* bufs, unsigned count, bool try_first);
  // Writes what this socket staged in its loop's WriteBatch now (before a FIN, a close, a
  // splice or a write too large to stage). false: the socket is broken.
  bool unstage();
  bool send_now(const uv_buf_t* bufs, unsigned count);
  bool flush_tls();
  bool flush_cork();  // writes what cork() gathered; false when the write failed
  void arm_timer(uint64_t due);
  static void poll_cb(uv_poll_t*, int, int);
  static void poll_close_cb(uv_handle_t*);
  void splice_pump();    // moves what this socket has read (or can read) towards its peer
  void splice_update();  // poll interest of this socket from both directions' state
  void splice_end();     // leaves splice mode: pipes released, poll handle closed
  bool splice_revert(int err);  // back to the copy path after `err` (-errno); false: too late

  std::unique_ptr<tls::Session> tls_;
  std::unique_ptr<Splice> splice_;  // set only while in splice mode
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_shutdown_t shutdown_req_;
  size_t queued_ = 0;
  int32_t batch_entry_ = -1;  // its entry in the loop's WriteBatch, -1: nothing staged
  // Deadlines are lazy: set_deadline() only records the due time (loop ms), and the libuv
  // timer is restarted only when it must fire earlier than it is armed for; when it fires
  // early it re-arms for the real deadline. Frequent set/clear (every request, every tunnel
  // read) cost no timer-heap work. kNoTime: none.
  static constexpr uint64_t kNoTime = UINT64_MAX;
  uint64_t deadline_ = kNoTime;
  uint64_t armed_ = kNoTime;
  uint8_t open_handles_ = 2;
  bool reading_ = false;
  bool closing_ = false;
  bool shutdown_sent_ = false;
  bool eof_seen_ = false;  // TLS close_notify and the TCP FIN both end the stream once
  bool tls_established_ = false;
  bool splice_refused_ = false;  // splice failed once on this socket: copy path for good
};

// Binds and listens; calls `on_connection` for each connection the loop accepts.
class Listener {
 public:
  Listener(uv_loop_t* loop, const SocketAddress& addr, std::function<void(uv_stream_t*)> on_conn);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  // 0 or a libuv error code. `reuseport`: one of several listeners (workers) sharing the
  // address through SO_REUSEPORT; the kernel spreads connections over them.
  int start(bool reuseport = false);
  // Before a SO_REUSEPORT group binds `addr`: fails (libuv error code) when anything holds it
  // already; a port 0 is replaced by a free one, which the group then shares.
  static int claim(SocketAddress& addr);
  // Listens on a dup() of `fd`, an already bound (and maybe listening) socket passed by the
  // process this one replaces or by systemd. 0 or a libuv error code.
  int adopt(int fd);
  int fd() const;  // the listening socket, -1 once closed
  std::string bound_address() const;   // "127.0.0.1:40123" (real port when 0 was asked)
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(handle_); }
  void close();

 private:
  static void connection_cb(uv_stream_t*, int);
  uv_tcp_t* handle_;  // heap: it must outlive this object until its close callback runs
  SocketAddress addr_;
  std::function<void(uv_stream_t*)> on_conn_;
  bool open_ = false;
};

std::string format_address(const sockaddr* sa);  // "1.2.3.4:80" / "[::1]:80"
std::string peer_ip(const uv_tcp_t* tcp);        // "1.2.3.4" / "::1", "" when unknown

}  // namespace stickyd
