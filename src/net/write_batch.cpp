#include "stickyd/write_batch.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#ifdef __linux__
#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>
#endif

#include "stickyd/log.hpp"
#include "stickyd/net.hpp"

namespace stickyd {

namespace {
constexpr int32_t kNotSubmitted = INT32_MIN;
constexpr unsigned kRingEntries = 256;      // SENDMSGs per io_uring_enter; more go in chunks
constexpr size_t kArenaKeep = 256 * 1024;  // the arena shrinks back to this after a burst
}  // namespace

// The kernel's submission and completion rings, through liburing. Only what a batch of sends
// needs: no SQPOLL, no registered buffers or files. Single-threaded (one loop).
struct WriteBatch::Ring {
#ifdef __linux__
  io_uring ring{};
  bool open_ = false;
  unsigned sq_entries = 0;

  ~Ring() {
    if (open_) io_uring_queue_exit(&ring);
  }

  static std::unique_ptr<Ring> open(std::string& why) {
    auto r = std::make_unique<Ring>();
    io_uring_params p{};
    p.flags = IORING_SETUP_SUBMIT_ALL;  // one refused SQE must not stop the others (5.18+)
    int e = io_uring_queue_init_params(kRingEntries, &r->ring, &p);
    if (e == -EINVAL) {
      p = io_uring_params{};
      e = io_uring_queue_init_params(kRingEntries, &r->ring, &p);
    }
    if (e < 0) {
      why = std::string("io_uring_setup: ") + std::strerror(-e);
      return nullptr;
    }
    r->open_ = true;
    r->sq_entries = p.sq_entries;
    // SENDMSG (5.3) is what we submit; the probe itself needs 5.6.
    io_uring_probe* probe = io_uring_get_probe_ring(&r->ring);
    bool sendmsg = probe && io_uring_opcode_supported(probe, IORING_OP_SENDMSG);
    if (probe) io_uring_free_probe(probe);
    if (!sendmsg) {
      why = "io_uring has no SENDMSG here";
      return nullptr;
    }
    return r;
  }

  // Queues one SENDMSG; the caller has checked there is room (at most sq_entries per run).
  void push_sendmsg(int sock, const msghdr* msg, uint64_t user_data) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    // MSG_DONTWAIT: a full socket answers -EAGAIN at once instead of the ring waiting for it,
    // so every send completes inside the submit call.
    io_uring_prep_sendmsg(sqe, sock, msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, user_data);
  }

  // Results of the completions there are; `missing` counts down.
  void reap(std::vector<int32_t>& results, unsigned& missing) {
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
      uint64_t k = io_uring_cqe_get_data64(cqe);
      if (k < results.size()) results[k] = cqe->res;
      ++seen;
    }
    io_uring_cq_advance(&ring, seen);
    missing -= seen;
  }

  // Submits the `n` SENDMSGs pushed and collects their results. false: the ring failed
  // (errno); the caller drops it, so those the kernel did not take are never sent by it,
  // and their results stay untouched (they go out the old way).
  bool run(unsigned n, std::vector<int32_t>& results) {
    unsigned missing = n;  // completions not reaped (submitted or not)
    for (;;) {
      reap(results, missing);
      if (missing == 0) return true;
      int r = io_uring_submit_and_wait(&ring, missing);
      if (r >= 0 || r == -EINTR || r == -EAGAIN || r == -EBUSY) continue;
      // Wait only for what the kernel took: a result must never be lost for a send made.
      unsigned untaken = io_uring_sq_ready(&ring);
      while (missing > untaken) {
        io_uring_cqe* cqe;
        int w = io_uring_wait_cqe(&ring, &cqe);
        if (w < 0 && w != -EINTR) break;
        reap(results, missing);
      }
      errno = -r;
      return false;
    }
  }
#endif
};

std::unique_ptr<WriteBatch> WriteBatch::create(uv_loop_t* loop, std::string& why) {
#ifdef __linux__
  std::unique_ptr<Ring> ring = Ring::open(why);
  if (!ring) return nullptr;
  return std::unique_ptr<WriteBatch>(new WriteBatch(loop, std::move(ring)));
#else
  (void)loop;
  why = "io_uring is Linux only";
  return nullptr;
#endif
}

WriteBatch::WriteBatch(uv_loop_t* loop, std::unique_ptr<Ring> ring)
    : loop_(loop), ring_(std::move(ring)) {
  uv_prepare_init(loop_, &prepare_);
  uv_check_init(loop_, &check_);
  prepare_.data = this;
  check_.data = this;
  open_handles_ = 2;
}

WriteBatch::~WriteBatch() = default;

void WriteBatch::phase_cb(uv_handle_t* h) { static_cast<WriteBatch*>(h->data)->flush(); }

void WriteBatch::attach() {
  if (attached_) return;
  attached_ = true;
  current_ = this;
  // Before the loop blocks (what timers and close callbacks wrote) and after each poll batch.
  uv_prepare_start(&prepare_, [](uv_prepare_t* p) { phase_cb(reinterpret_cast<uv_handle_t*>(p)); });
  uv_check_start(&check_, [](uv_check_t* c) { phase_cb(reinterpret_cast<uv_handle_t*>(c)); });
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));  // they never keep the loop alive
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
}

void WriteBatch::close(std::unique_ptr<WriteBatch> self) {
  if (!self) return;
  self->flush();
  if (current_ == self.get()) current_ = nullptr;
  self->attached_ = false;
  self->ring_.reset();  // the ring's fd goes now; the handles need a loop turn
  WriteBatch* b = self.release();  // owned by its two handles until both are closed
  auto closed = [](uv_handle_t* h) {
    auto* batch = static_cast<WriteBatch*>(h->data);
    if (--batch->open_handles_ == 0) delete batch;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&b->prepare_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&b->check_), closed);
}

bool WriteBatch::stage(Socket& s, const uv_buf_t* bufs, unsigned count, size_t total) {
  if (flushing_ || !attached_ || !ring_ || total > kStageMax || arena_.size() + total > kArenaMax)
    return false;
  if (entries_.empty()) {
    // Staged bytes keep the loop alive until they are sent, as a queued write would.
    uv_ref(reinterpret_cast<uv_handle_t*>(&prepare_));
    uv_ref(reinterpret_cast<uv_handle_t*>(&check_));
  }
  if (s.batch_entry_ < 0) {
    entries_.push_back(Entry{&s, -1, -1, 0});
    s.batch_entry_ = static_cast<int32_t>(entries_.size() - 1);
  }
  Entry& e = entries_[static_cast<size_t>(s.batch_entry_)];
  auto off = static_cast<uint32_t>(arena_.size());
  for (unsigned i = 0; i < count; ++i) arena_.append(bufs[i].base, bufs[i].len);
  if (e.last >= 0 && spans_[static_cast<size_t>(e.last)].off + spans_[static_cast<size_t>(e.last)].len == off) {
    spans_[static_cast<size_t>(e.last)].len += static_cast<uint32_t>(total);  // contiguous: one span
  } else {
    spans_.push_back(Span{off, static_cast<uint32_t>(total), -1});
    auto i = static_cast<int32_t>(spans_.size() - 1);
    if (e.last >= 0) spans_[static_cast<size_t>(e.last)].next = i;
    else e.first = i;
    e.last = i;
  }
  e.bytes += total;
  return true;
}

std::vector<uv_buf_t>& WriteBatch::take(Socket& s) {
  taken_.clear();
  if (s.batch_entry_ < 0) return taken_;
  Entry& e = entries_[static_cast<size_t>(s.batch_entry_)];
  s.batch_entry_ = -1;
  e.socket = nullptr;
  buffers_of(e, 0);
  return taken_;
}

void WriteBatch::buffers_of(const Entry& e, size_t skip) {
  taken_.clear();
  for (int32_t i = e.first; i >= 0; i = spans_[static_cast<size_t>(i)].next) {
    const Span& sp = spans_[static_cast<size_t>(i)];
    if (skip >= sp.len) {
      skip -= sp.len;
      continue;
    }
    taken_.push_back(uv_buf_init(arena_.data() + sp.off + skip, static_cast<unsigned>(sp.len - skip)));
    skip = 0;
  }
}

void WriteBatch::forget(Socket& s) {
  if (s.batch_entry_ >= 0) {
    entries_[static_cast<size_t>(s.batch_entry_)].socket = nullptr;
    s.batch_entry_ = -1;
  }
  if (flushing_)  // entries being reported no longer point back from their sockets
    for (Entry& e : entries_)
      if (e.socket == &s) e.socket = nullptr;
}

#ifdef __linux__
// One SENDMSG per staged socket, in chunks of the ring's size; results_ gets each one's result.
void WriteBatch::submit() {
  // One iovec per span and one msghdr per socket, all alive until the submit returns.
  iovs_.resize(spans_.size());
  msgs_.resize(entries_.size());
  size_t next_iov = 0;
  for (size_t k = 0; k < entries_.size(); ++k) {
    Entry& e = entries_[k];
    if (!e.socket) continue;
    msghdr& m = msgs_[k];
    m = msghdr{};
    m.msg_iov = &iovs_[next_iov];
    for (int32_t i = e.first; i >= 0; i = spans_[static_cast<size_t>(i)].next) {
      const Span& sp = spans_[static_cast<size_t>(i)];
      iovs_[next_iov++] = iovec{arena_.data() + sp.off, sp.len};
      ++m.msg_iovlen;
    }
  }
  size_t k = 0;
  while (k < entries_.size() && ring_) {
    unsigned n = 0;
    for (; k < entries_.size() && n < ring_->sq_entries; ++k) {
      Entry& e = entries_[k];
      uv_os_fd_t fd;
      if (!e.socket || e.socket->closing() || e.socket->queued_bytes() > 0 ||
          uv_fileno(reinterpret_cast<uv_handle_t*>(e.socket->tcp()), &fd) != 0)
        continue;  // reported below: closing drops, queued or fd-less writes the old way
      ring_->push_sendmsg(fd, &msgs_[k], k);
      ++n;
    }
    if (n == 0) continue;
    ++submits_;
    writes_ += n;
    if (!ring_->run(n, results_)) {
      // Not expected once the ring works; from now on every send is one write(2).
      log::warn("io_uring submit failed: writes go out one syscall each",
                {{"error", std::strerror(errno)}});
      ring_.reset();
      break;  // what was not sent is written the old way below
    }
  }
}
#endif

void WriteBatch::flush() {
  if (flushing_ || entries_.empty()) return;
  flushing_ = true;  // sends from callbacks below write at once (or queue behind a remainder)
  results_.assign(entries_.size(), kNotSubmitted);
  for (Entry& e : entries_)
    if (e.socket) e.socket->batch_entry_ = -1;

#ifdef __linux__
  // A lone write gains nothing from the ring (one syscall either way, and write(2) is the
  // cheaper one): it goes out below through the old path. That is the low-load case.
  size_t live = 0;
  for (const Entry& e : entries_) live += e.socket != nullptr;
  if (live > 1 && ring_) submit();
#endif

  // Pass 1, no callbacks: what a socket did not take is queued before anything else can be
  // sent to it.
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    int32_t r = results_[i];
    if (!e.socket || e.socket->closing() || r == static_cast<int32_t>(e.bytes)) continue;
    if (r < 0 && r != kNotSubmitted && r != -EAGAIN) continue;  // an error: pass 2
    buffers_of(e, r > 0 ? static_cast<size_t>(r) : 0);  // what the kernel did not take
    bool try_first = r == kNotSubmitted && e.socket->queued_bytes() == 0;
    if (!e.socket->direct_send(taken_.data(), static_cast<unsigned>(taken_.size()), try_first))
      results_[i] = -EPIPE;
  }
  // Pass 2: errors, reported as a failed queued write would be.
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    int32_t r = results_[i];
    if (!e.socket || r >= 0 || r == kNotSubmitted || r == -EAGAIN) continue;
    if (!e.socket->closing()) e.socket->on_write_error(r);  // -errno is libuv's code on Linux
  }

  entries_.clear();
  spans_.clear();
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  if (arena_.capacity() > kArenaKeep) std::string().swap(arena_);
  else arena_.clear();
  flushing_ = false;
}

}  // namespace stickyd
