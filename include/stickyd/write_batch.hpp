// WriteBatch: the small writes of one event-loop iteration, handed to the kernel in one
// io_uring_enter(2) instead of one write(2) each.
//
// Why: per sticky poll a proxy reads and writes once on each side, and on hosts where a
// syscall is expensive (virtualised guests) those four syscalls are most of the proxy's CPU.
// Reads stay with libuv (readiness, one read each). Writes of up to kStageMax bytes are
// copied into this batch instead, and at the end of the iteration (libuv's check phase, and
// its prepare phase for what timers and close callbacks wrote) every staged socket gets one
// SENDMSG with MSG_DONTWAIT, all submitted and reaped in one call. MSG_DONTWAIT keeps them
// synchronous: each completes during the submit (bytes taken, or -EAGAIN when the socket's
// buffer is full), so nothing is in flight once flush() returns and a socket can close at any
// time. What a socket did not take goes on libuv's write queue as a partial write would.
//
// One batch per loop, and so per thread: of(loop) finds it through a thread-local pointer set
// by attach() and cleared by close() (not loop->data, which an embedder owns). When
// io_uring is missing or refused (old kernels, seccomp, kernel.io_uring_disabled), create()
// fails with the reason and every send stays one write(2), as before.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace stickyd {

class Socket;

class WriteBatch {
 public:
  // Writes larger than this are not worth a copy: they go out at once (after the socket's
  // staged bytes).
  static constexpr size_t kStageMax = 16 * 1024;
  // Bytes staged per iteration before further sends bypass the batch (bounds the copy).
  static constexpr size_t kArenaMax = 1024 * 1024;

  // nullptr, with `why`, when io_uring cannot be used here.
  static std::unique_ptr<WriteBatch> create(uv_loop_t* loop, std::string& why);
  ~WriteBatch();
  WriteBatch(const WriteBatch&) = delete;
  WriteBatch& operator=(const WriteBatch&) = delete;

  // The batch of a loop, or nullptr (none attached: sends write at once).
  static WriteBatch* of(const uv_loop_t* loop) {
    WriteBatch* b = current_;
    return b && b->loop_ == loop ? b : nullptr;
  }

  // Starts the prepare/check handles and makes of(loop) return this batch (on this thread).
  void attach();
  // Flushes, detaches from the loop and closes the handles; `self` is destroyed once libuv
  // has released them (the loop must run its close callbacks, as for any handle).
  static void close(std::unique_ptr<WriteBatch> self);

  // Copies `bufs` behind what `s` staged before. false: not staged (too large, or the
  // iteration's budget is spent); the caller writes them itself, after take(s).
  bool stage(Socket& s, const uv_buf_t* bufs, unsigned count, size_t total);
  // Removes what `s` staged and returns it as buffers valid until the next stage() or flush()
  // (the caller writes them at once). Empty when nothing was staged.
  std::vector<uv_buf_t>& take(Socket& s);
  // `s` is being destroyed: whatever it staged is dropped.
  void forget(Socket& s);
  // Submits everything staged; results are reported to the sockets (partial writes queued,
  // errors through on_write_error).
  void flush();

  // Figures for tests and metrics.
  uint64_t submits() const { return submits_; }
  uint64_t writes() const { return writes_; }

 private:
  static inline thread_local WriteBatch* current_ = nullptr;
  struct Ring;
  struct Span {
    uint32_t off, len;
    int32_t next;  // index in spans_, -1: last
  };
  struct Entry {
    Socket* socket;  // nullptr: taken back by the socket
    int32_t first, last;
    size_t bytes;
  };
  WriteBatch(uv_loop_t* loop, std::unique_ptr<Ring> ring);
  static void phase_cb(uv_handle_t* h);
  void submit();  // the staged sockets' SENDMSGs through the ring, results into results_
  // taken_ = e's staged bytes from offset `skip` on, as buffers into the arena.
  void buffers_of(const Entry& e, size_t skip);

  uv_loop_t* loop_;
  std::unique_ptr<Ring> ring_;
  uv_prepare_t prepare_;
  uv_check_t check_;
  int open_handles_ = 0;
  bool attached_ = false;
  bool flushing_ = false;
  std::string arena_;
  std::vector<Span> spans_;
  std::vector<Entry> entries_;
  std::vector<uv_buf_t> taken_;
  std::vector<int32_t> results_;  // per entry: bytes sent, -errno, or not submitted
  std::vector<iovec> iovs_;
  std::vector<msghdr> msgs_;
  uint64_t submits_ = 0, writes_ = 0;
};

}  // namespace stickyd
