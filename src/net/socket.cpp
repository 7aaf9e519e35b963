#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#ifdef __linux__
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "stickyd/log.hpp"
#include "stickyd/net.hpp"
#include "stickyd/tls.hpp"
#include "stickyd/write_batch.hpp"

namespace stickyd {

namespace {
// cork(): the socket whose sends are being gathered, and what was gathered. Per thread (one
// loop per thread); the corked socket is uncorked before the callback that corked it returns.
thread_local Socket* g_corked = nullptr;
std::string& cork_buffer() {
  thread_local std::string b;  // reused, never shrunk: one per loop, not per connection
  return b;
}
// Sends up to this size are copied into the cork buffer; a larger one is written at once,
// together with what was gathered (one writev), without copying.
constexpr size_t kCorkMax = 16 * 1024;
}  // namespace

struct Socket::QueuedWrite {
  uv_write_t req;
  Socket* owner;
  size_t len;
  std::unique_ptr<char[]> data;
};

// ---------------------------------------------------------------- splice mode
//
// Why the sockets' own fds are polled (no dup()): libuv keeps one watcher per fd
// (loop->watchers[fd]); uv_poll_init() refuses an fd that has one (UV_EEXIST). After
// uv_read_stop() with no write queued (splice_join() demands both), the stream's watcher has
// no events left and uv__io_stop() has removed it from loop->watchers, so a uv_poll_t can own
// the fd. Nothing starts the stream's watcher again while the poll handle is alive: in splice
// mode start_reading() is a no-op, sends fail, shutdown_write() calls shutdown(2) itself, and
// close() closes the poll handle (uv__poll_stop: watcher removed, fd dropped from epoll)
// before the stream (which then closes the fd). The stream's stale epoll registration from
// its reads is dropped by uv_poll_init's own check (uv__io_check_fd: ADD -> EEXIST, DEL).
// A dup() per socket would cost two more fds per tunnel for nothing.
struct Socket::Splice {
  uv_poll_t poll;
  Socket* owner = nullptr;
  Socket* peer = nullptr;  // cleared when the peer leaves splice mode (closes)
  int fd = -1;
  int pipe_r = -1, pipe_w = -1;  // borrowed while bytes read from `owner` are in flight
  size_t in_pipe = 0;            // bytes read from `owner`, not yet written to `peer`
  int events = 0;                // what the poll handle watches now
  bool src_eof = false;          // `owner` sent its FIN
  bool moved = false;            // some byte went through (no going back to the copy path)
};

namespace {
#ifdef __linux__
constexpr size_t kSpliceChunk = 64 * 1024;  // one pipe's default capacity
constexpr int kSpliceReads = 16;            // per readiness event: 1 MiB, then others' turn
constexpr size_t kPipePoolMax = 16;         // spare pipes kept per thread

// Pipes not in use, per thread (one loop per thread). Kept only while spliced sockets exist
// on the thread: when the last one leaves splice mode they are all closed, so stickyd's fd
// count comes back to what it was before any tunnel.
struct PipePool {
  std::vector<std::pair<int, int>> spare;
  size_t users = 0;  // sockets in splice mode on this thread
  void drop_all() {
    for (auto [r, w] : spare) {
      ::close(r);
      ::close(w);
    }
    spare.clear();
  }
  ~PipePool() { drop_all(); }
};
PipePool& pipe_pool() {
  thread_local PipePool pool;
  return pool;
}
#endif
}  // namespace

Socket::Socket(uv_loop_t* loop) {
  uv_tcp_init(loop, &tcp_);
  uv_timer_init(loop, &timer_);
  tcp_.data = this;
  timer_.data = this;
}

Socket::~Socket() {
  if (WriteBatch* batch = WriteBatch::of(tcp_.loop)) batch->forget(*this);
  if (g_corked == this) {
    g_corked = nullptr;
    cork_buffer().clear();
  }
}

void Socket::alloc_cb(uv_handle_t*, size_t, uv_buf_t* buf) {
  thread_local char shared[kReadBufferSize];  // one loop per thread; reads never nest
  *buf = uv_buf_init(shared, sizeof shared);
}

void Socket::use_tls(std::unique_ptr<tls::Session> session, bool client) {
  tls_ = std::move(session);
  if (client) {
    tls_->start();
    flush_tls();
  }
}

bool Socket::flush_tls() {
  thread_local std::string wire;  // reused: one loop per thread, never nested
  wire.clear();
  tls_->take_output(wire);
  if (wire.empty()) return true;
  uv_buf_t b = uv_buf_init(wire.data(), static_cast<unsigned>(wire.size()));
  return raw_send(&b, 1);
}

void Socket::read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* self = static_cast<Socket*>(s->data);
  if (self->closing_) return;
  if (n > 0 && self->tls_) {
    thread_local std::string plain;  // decrypted bytes; reused like the read buffer
    plain.clear();
    bool ok = self->tls_->feed(buf->base, static_cast<size_t>(n), plain);
    self->flush_tls();  // handshake records, alerts
    if (!ok) {
      self->on_tls_error(self->tls_->error());
      return;
    }
    if (!self->tls_established_ && self->tls_->handshake_done()) {
      self->tls_established_ = true;
      self->on_tls_established();
      if (self->closing_) return;
    }
    if (!plain.empty() && !self->closing_) self->on_read(plain.data(), plain.size());
    if (self->tls_ && self->tls_->peer_closed() && !self->closing_ && !self->eof_seen_) {
      self->eof_seen_ = true;
      self->on_eof();
    }
    if (g_corked) g_corked->uncork();  // never leave bytes gathered past a callback
    return;
  }
  if (n > 0) {
    self->on_read(buf->base, static_cast<size_t>(n));
  } else if (n == UV_EOF) {
    if (self->eof_seen_) return;
    self->eof_seen_ = true;
    self->on_eof();
  } else if (n < 0) {
    self->on_read_error(static_cast<int>(n));
  }
  if (g_corked) g_corked->uncork();  // never leave bytes gathered past a callback
}

void Socket::start_reading() {
  if (reading_ || closing_ || splice_) return;
  if (uv_read_start(stream(), alloc_cb, read_cb) == 0) reading_ = true;
}

void Socket::stop_reading() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

bool Socket::send(std::string_view bytes) {
  uv_buf_t b = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
  return send(&b, 1);
}

bool Socket::send(const uv_buf_t* bufs, unsigned count) {
  if (closing_ || shutdown_sent_) return false;
  if (g_corked == this) {
    std::string& gathered = cork_buffer();
    size_t total = 0;
    for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
    if (gathered.size() + total <= kCorkMax) {
      for (unsigned i = 0; i < count; ++i) gathered.append(bufs[i].base, bufs[i].len);
      return true;
    }
    // Too large to copy: what was gathered and these buffers go out in one write, and the
    // cork ends (what follows is bulk data).
    g_corked = nullptr;
    bool ok;
    if (count < 8) {
      uv_buf_t all[8];
      all[0] = uv_buf_init(gathered.data(), static_cast<unsigned>(gathered.size()));
      for (unsigned i = 0; i < count; ++i) all[i + 1] = bufs[i];
      ok = send_now(all, count + 1);
    } else {
      uv_buf_t b = uv_buf_init(gathered.data(), static_cast<unsigned>(gathered.size()));
      ok = send_now(&b, 1) && send_now(bufs, count);
    }
    gathered.clear();
    return ok;
  }
  return send_now(bufs, count);
}

void Socket::cork() {
  if (g_corked || closing_ || shutdown_sent_ || splice_) return;  // someone else holds it: no cork
  g_corked = this;
}

void Socket::uncork() {
  if (g_corked != this) return;
  if (!flush_cork()) on_write_error(UV_EPIPE);
}

bool Socket::flush_cork() {
  if (g_corked != this) return true;
  g_corked = nullptr;
  std::string& gathered = cork_buffer();
  if (gathered.empty()) return true;
  uv_buf_t b = uv_buf_init(gathered.data(), static_cast<unsigned>(gathered.size()));
  bool ok = send_now(&b, 1);
  gathered.clear();
  return ok;
}

bool Socket::send_now(const uv_buf_t* bufs, unsigned count) {
  if (closing_ || shutdown_sent_) return false;
  if (tls_) {
    for (unsigned i = 0; i < count; ++i)
      if (bufs[i].len && !tls_->write(std::string_view(bufs[i].base, bufs[i].len))) return false;
    return flush_tls();
  }
  return raw_send(bufs, count);
}

bool Socket::raw_send(const uv_buf_t* bufs, unsigned count) {
  if (closing_ || shutdown_sent_ || splice_) return false;  // splice mode: libuv never writes
  size_t total = 0;
  for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
  if (total == 0) return true;
  if (queued_ == 0) {  // keep order: never stage or try_write past a queued write
    if (WriteBatch* batch = WriteBatch::of(tcp_.loop)) {
      if (batch->stage(*this, bufs, count, total)) return true;  // sent at the loop's turn
      if (!unstage()) return false;  // what was staged goes first
    }
  }
  return direct_send(bufs, count, queued_ == 0);
}

bool Socket::unstage() {
  if (batch_entry_ < 0) return true;
  WriteBatch* batch = WriteBatch::of(tcp_.loop);
  if (!batch) return true;
  std::vector<uv_buf_t>& staged = batch->take(*this);
  if (staged.empty()) return true;
  return direct_send(staged.data(), static_cast<unsigned>(staged.size()), queued_ == 0);
}

bool Socket::direct_send(const uv_buf_t* bufs, unsigned count, bool try_first) {
  size_t total = 0;
  for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
  if (total == 0) return true;
  size_t done = 0;
  if (try_first && queued_ == 0) {
    int r = uv_try_write(stream(), bufs, count);
    if (r >= 0) {
      done = static_cast<size_t>(r);
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      return false;
    }
  }
  if (done == total) return true;
  auto w = std::make_unique<QueuedWrite>();
  w->owner = this;
  w->len = total - done;
  w->data = std::make_unique<char[]>(w->len);
  size_t skip = done, off = 0;
  for (unsigned i = 0; i < count; ++i) {
    size_t l = bufs[i].len;
    if (skip >= l) { skip -= l; continue; }
    std::memcpy(w->data.get() + off, bufs[i].base + skip, l - skip);
    off += l - skip;
    skip = 0;
  }
  uv_buf_t b = uv_buf_init(w->data.get(), static_cast<unsigned>(w->len));
  w->req.data = w.get();
  if (uv_write(&w->req, stream(), &b, 1, write_cb) != 0) return false;
  queued_ += w->len;
  w.release();  // owned by libuv until write_cb
  return true;
}

void Socket::write_cb(uv_write_t* req, int status) {
  std::unique_ptr<QueuedWrite> w(static_cast<QueuedWrite*>(req->data));
  Socket* self = w->owner;
  self->queued_ -= w->len;
  if (self->closing_) return;
  if (status < 0) {
    self->on_write_error(status);
  } else if (self->queued_ == 0) {
    self->on_drained();
  }
}

void Socket::shutdown_write() {
  if (closing_ || shutdown_sent_) return;
  flush_cork();  // gathered bytes go before the FIN (a failure shows up as a read error)
  if (tls_) {
    tls_->shutdown();  // close_notify before the FIN
    flush_tls();
  }
  unstage();  // staged bytes go before the FIN too (uv_shutdown waits for libuv's queue only)
  shutdown_sent_ = true;
#ifdef __linux__
  if (splice_) {
    // Only sent once this direction's pipe is flushed (on_eof comes after it): the FIN
    // follows the last byte. libuv's uv_shutdown would start the stream's watcher.
    ::shutdown(splice_->fd, SHUT_WR);
    return;
  }
#endif
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, stream(), shutdown_cb) != 0) shutdown_sent_ = true;
}

void Socket::shutdown_cb(uv_shutdown_t*, int) {}

void Socket::set_deadline(Millis after) {
  if (closing_) return;
  uint64_t due = uv_now(tcp_.loop) + static_cast<uint64_t>(after.count());
  deadline_ = due;
  if (due < armed_) arm_timer(due);  // else the armed timer fires first and re-arms
}

void Socket::clear_deadline() {
  deadline_ = kNoTime;  // an armed timer finds no deadline when it fires
}

void Socket::arm_timer(uint64_t due) {
  uint64_t now = uv_now(tcp_.loop);
  armed_ = due;
  uv_timer_start(&timer_, timer_cb, due > now ? due - now : 0, 0);
}

void Socket::timer_cb(uv_timer_t* t) {
  auto* self = static_cast<Socket*>(t->data);
  self->armed_ = kNoTime;
  if (self->closing_ || self->deadline_ == kNoTime) return;
  if (uv_now(self->tcp_.loop) < self->deadline_) {
    self->arm_timer(self->deadline_);  // moved later since the timer was armed
    return;
  }
  self->deadline_ = kNoTime;
  self->on_deadline();
  if (g_corked) g_corked->uncork();
}

void Socket::close() {
  if (closing_) return;
  if (g_corked == this) flush_cork();  // as if sent before the close (best effort)
  unstage();                           // likewise what waits for the loop's batch
  closing_ = true;
  reading_ = false;
  if (splice_) splice_end();  // the poll handle before the stream that owns the fd
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), close_cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), close_cb);
}

void Socket::close_cb(uv_handle_t* h) {
  auto* self = static_cast<Socket*>(h->data);
  if (--self->open_handles_ == 0) self->on_closed();
}

// ---------------------------------------------------------------- splice mode

bool Socket::splice_join(Socket& a, Socket& b) {
#ifdef __linux__
  Socket* both[2] = {&a, &b};
  uv_os_fd_t fds[2];
  // A 101 head staged for the loop's batch is written now: spliced sockets are not libuv's.
  if (!a.closing_ && !a.unstage()) return false;
  if (!b.closing_ && !b.unstage()) return false;
  for (int i = 0; i < 2; ++i) {
    Socket* s = both[i];
    if (s->tls_ || s->closing_ || s->shutdown_sent_ || s->eof_seen_ || s->queued_ ||
        g_corked == s || s->splice_ || s->splice_refused_ || s->loop() != a.loop() ||
        uv_fileno(reinterpret_cast<uv_handle_t*>(&s->tcp_), &fds[i]) != 0)
      return false;
  }
  a.stop_reading();
  b.stop_reading();
  std::unique_ptr<Splice> sp[2];
  for (int i = 0; i < 2; ++i) {
    sp[i] = std::make_unique<Splice>();
    if (uv_poll_init_socket(a.loop(), &sp[i]->poll, fds[i]) != 0) {
      // Not pollable here (a watcher still owns the fd): stay on the copy path for good.
      a.splice_refused_ = b.splice_refused_ = true;
      if (i == 1) {  // the first handle was initialised: it must be closed
        both[0]->splice_ = std::move(sp[0]);
        both[0]->splice_->owner = both[0];
        both[0]->splice_->fd = fds[0];
        ++both[0]->open_handles_;
        ++pipe_pool().users;
        both[0]->splice_end();
      }
      return false;
    }
    sp[i]->poll.data = sp[i].get();
    sp[i]->owner = both[i];
    sp[i]->fd = fds[i];
  }
  for (int i = 0; i < 2; ++i) {
    sp[i]->peer = both[1 - i];
    both[i]->splice_ = std::move(sp[i]);
    ++both[i]->open_handles_;  // on_closed() waits for the poll handle too
    ++pipe_pool().users;
  }
  a.splice_update();
  b.splice_update();
  return true;
#else
  (void)a;
  (void)b;
  return false;
#endif
}

void Socket::poll_cb(uv_poll_t* h, int status, int events) {
  auto* sp = static_cast<Splice*>(h->data);
  Socket* self = sp->owner;
  if (self->closing_ || self->splice_.get() != sp) return;
  if (status < 0) {
    // POLLERR (libuv stopped the watcher): report the socket's own error, as a read would.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(sp->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) status = -err;
    self->on_read_error(status);
  } else {
    if (events & UV_READABLE) self->splice_pump();
    if ((events & UV_WRITABLE) && !self->closing_ && self->splice_.get() == sp && sp->peer)
      sp->peer->splice_pump();  // the peer's bytes wait in its pipe for this socket
  }
  if (g_corked) g_corked->uncork();
}

void Socket::splice_pump() {
#ifdef __linux__
  Splice& s = *splice_;
  Socket* dst = s.peer;
  if (!dst || !dst->splice_) {
    splice_update();
    return;
  }
  const int dst_fd = dst->splice_->fd;
  size_t got = 0;
  int reads = 0;
  bool dry = false;
  int read_err = 0, write_err = 0;
  for (;;) {
    if (s.in_pipe) {
      ssize_t w = ::splice(s.pipe_r, nullptr, dst_fd, nullptr, s.in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) write_err = -errno;
        break;  // EAGAIN: the bytes wait in the pipe until the peer is writable
      }
      s.in_pipe -= static_cast<size_t>(w);
      s.moved = true;
      if (s.in_pipe) break;  // socket buffer full: wait until writable
    }
    if (s.src_eof || dry || reads == kSpliceReads) break;
    if (s.pipe_r < 0) {
      PipePool& pool = pipe_pool();
      if (!pool.spare.empty()) {
        std::tie(s.pipe_r, s.pipe_w) = pool.spare.back();
        pool.spare.pop_back();
      } else {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
          read_err = -errno;
          if (splice_revert(read_err)) return;  // EMFILE and the like: the copy path needs no pipe
          break;
        }
        s.pipe_r = p[0];
        s.pipe_w = p[1];
      }
    }
    ssize_t r = ::splice(s.fd, nullptr, s.pipe_w, nullptr, kSpliceChunk,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    ++reads;
    if (r > 0) {
      s.in_pipe = static_cast<size_t>(r);
      got += static_cast<size_t>(r);
      // A short read almost always means the receive queue is empty: spare the EAGAIN
      // syscall; level-triggered polling calls again if more came meanwhile.
      dry = static_cast<size_t>(r) < kSpliceChunk;
      continue;
    }
    if (r == 0) {
      s.src_eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    read_err = -errno;
    if ((errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) && got == 0 && splice_revert(read_err))
      return;  // splice(2) does not work on these fds: the copy path takes over
    break;
  }
  if (s.in_pipe == 0 && s.pipe_r >= 0) {  // empty: back to the pool
    PipePool& pool = pipe_pool();
    if (pool.spare.size() < kPipePoolMax) {
      pool.spare.emplace_back(s.pipe_r, s.pipe_w);
    } else {
      ::close(s.pipe_r);
      ::close(s.pipe_w);
    }
    s.pipe_r = s.pipe_w = -1;
  }
  if (got) {
    s.moved = true;
    on_spliced(got);  // metrics, idle deadline
    if (closing_ || !splice_) return;
  }
  if (write_err) {
    dst->on_write_error(write_err);
    return;
  }
  if (read_err) {
    on_read_error(read_err);
    return;
  }
  splice_update();
  if (dst->splice_) dst->splice_update();
  if (s.src_eof && s.in_pipe == 0 && !eof_seen_) {
    eof_seen_ = true;
    on_eof();  // every byte before the FIN is written: the owner may shut the peer down
  }
#endif
}

void Socket::splice_update() {
  Splice& s = *splice_;
  int want = 0;
  if (s.peer && s.peer->splice_) {
    if (!s.src_eof && s.in_pipe == 0) want |= UV_READABLE;  // else: backpressure
    if (s.peer->splice_->in_pipe) want |= UV_WRITABLE;
  }
  if (want == s.events) return;
  s.events = want;
  if (want) uv_poll_start(&s.poll, want, poll_cb);
  else uv_poll_stop(&s.poll);
}

void Socket::splice_end() {
#ifdef __linux__
  std::unique_ptr<Splice> sp = std::move(splice_);
  if (sp->peer && sp->peer->splice_) {
    sp->peer->splice_->peer = nullptr;
    sp->peer->splice_update();  // nothing to read for, nothing to write to
  }
  if (sp->pipe_r >= 0) {
    PipePool& pool = pipe_pool();
    if (sp->in_pipe == 0 && pool.spare.size() < kPipePoolMax) {
      pool.spare.emplace_back(sp->pipe_r, sp->pipe_w);
    } else {  // bytes left in it are dropped with the connection
      ::close(sp->pipe_r);
      ::close(sp->pipe_w);
    }
  }
  PipePool& pool = pipe_pool();
  if (--pool.users == 0) pool.drop_all();
  uv_close(reinterpret_cast<uv_handle_t*>(&sp.release()->poll), poll_close_cb);
#endif
}

void Socket::poll_close_cb(uv_handle_t* h) {
  std::unique_ptr<Splice> sp(static_cast<Splice*>(h->data));
  Socket* self = sp->owner;
  sp.reset();
  if (--self->open_handles_ == 0) self->on_closed();
}

namespace {
// Reads back what a pipe holds (at most one pipe's capacity) so that the copy path can send it.
bool drain_pipe(int pipe_r, size_t n, std::string& out) {
  out.resize(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(pipe_r, out.data() + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      return false;  // the bytes were counted as in the pipe: cannot happen short of a bug
    }
  }
  return true;
}
}  // namespace

bool Socket::splice_revert(int err) {
  Splice& s = *splice_;
  Socket* peer = s.peer;
  if (!peer || !peer->splice_) return false;
  Splice& p = *peer->splice_;
  // Called when reading from this socket failed, so its own pipe is empty (it is only read
  // into when empty). splice(2) refusing these fds (EINVAL, ENOSYS, EOPNOTSUPP) is believed
  // only before any byte went through. Running out of pipes (EMFILE, ENFILE, ENOMEM) can
  // happen at any time in a long tunnel: what the peer's pipe holds is read back into memory
  // and queued on this socket's libuv stream, ahead of anything the copy path writes. A FIN
  // already seen is not replayed by the copy path: such a tunnel fails instead (the caller
  // reports the error).
  const bool pipe_shortage = err == -EMFILE || err == -ENFILE || err == -ENOMEM;
  if (s.in_pipe || s.src_eof || p.src_eof) return false;
  if (!pipe_shortage && (s.moved || p.moved || p.in_pipe)) return false;
  std::string to_self;  // read from the peer, not yet written to this socket
  if (p.in_pipe && !drain_pipe(p.pipe_r, p.in_pipe, to_self)) return false;
  p.in_pipe = 0;
  static std::atomic<bool> logged{false};  // one line per process, not one per tunnel
  if (!logged.exchange(true, std::memory_order_relaxed))
    log::warn("tunnel splice unavailable", {{"error", uv_err_name(err)},
                                            {"fallback", "copy through user space"},
                                            {"note", "logged once per process"}});
  splice_refused_ = peer->splice_refused_ = true;
  splice_end();
  peer->splice_end();
  if (!to_self.empty() && !send(to_self)) {
    on_write_error(UV_EPIPE);
    return true;
  }
  // The owners restart libuv reading (ClientConn::update_reading) from their drained hook.
  on_drained();
  if (!peer->closing_) peer->on_drained();
  return true;
}

}  // namespace stickyd
