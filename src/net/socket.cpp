#include <cstring>
#include <memory>

#include "stickyd/net.hpp"
#include "stickyd/tls.hpp"

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

Socket::Socket(uv_loop_t* loop) {
  uv_tcp_init(loop, &tcp_);
  uv_timer_init(loop, &timer_);
  tcp_.data = this;
  timer_.data = this;
}

Socket::~Socket() {
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
  if (reading_ || closing_) return;
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
  if (g_corked || closing_ || shutdown_sent_) return;  // someone else holds it: no cork
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
  if (closing_ || shutdown_sent_) return false;
  size_t total = 0;
  for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
  if (total == 0) return true;
  size_t done = 0;
  if (queued_ == 0) {  // keep order: never try_write past a queued write
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
  shutdown_sent_ = true;
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
  closing_ = true;
  reading_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), close_cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), close_cb);
}

void Socket::close_cb(uv_handle_t* h) {
  auto* self = static_cast<Socket*>(h->data);
  if (--self->open_handles_ == 0) self->on_closed();
}

}  // namespace stickyd
