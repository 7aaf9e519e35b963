#include "stickyd/upgrade.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/workers.hpp"

extern char** environ;

namespace stickyd {

namespace {

constexpr int64_t kReadyTimeoutMs = 60000;   // the new process must serve within this
constexpr int kSnapshotTimeoutMs = 30000;    // ...and read the table within this
constexpr size_t kMaxPending = 1 << 20;      // deltas queued for the peer before we give up

bool parse_fd(std::string_view s, int& fd) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), fd);
  return ec == std::errc() && p == s.data() + s.size() && fd >= 0;
}

bool same_address(int fd, const SocketAddress& addr) {
  if (addr.port() == 0) return false;  // "any free port" names no particular socket
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  return format_address(reinterpret_cast<sockaddr*>(&ss)) ==
         format_address(addr.sa());
}

}  // namespace

std::string listen_label(const std::string& text) { return "listen " + text; }
std::string admin_label(const std::string& text) { return "admin " + text; }

// ---- InheritedSockets

bool InheritedSockets::parse(std::string_view value) {
  groups_.clear();
  while (!value.empty()) {
    size_t semi = value.find(';');
    std::string_view item = value.substr(0, semi);
    value = semi == std::string_view::npos ? std::string_view() : value.substr(semi + 1);
    size_t eq = item.rfind('=');
    if (eq == std::string_view::npos) return false;
    Group g;
    if (!unescape_field(item.substr(0, eq), g.label)) return false;
    std::string_view fds = item.substr(eq + 1);
    while (true) {
      size_t comma = fds.find(',');
      int fd;
      if (!parse_fd(fds.substr(0, comma), fd)) return false;
      g.fds.push_back(fd);
      if (comma == std::string_view::npos) break;
      fds = fds.substr(comma + 1);
    }
    groups_.push_back(std::move(g));
  }
  return true;
}

InheritedSockets InheritedSockets::from_environment() {
  InheritedSockets in;
  if (const char* v = std::getenv(kListenFdsEnv)) {
    if (!in.parse(v)) {
      log::error("ignoring a malformed " + std::string(kListenFdsEnv), {{"value", v}});
      in.groups_.clear();
    }
    in.source_ = "upgrade";
    ::unsetenv(kListenFdsEnv);
    return in;
  }
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  int p = 0, n = 0;
  if (pid && fds && parse_fd(pid, p) && p == getpid() && parse_fd(fds, n)) {
    // sd_listen_fds(3): the sockets are 3 .. 3 + n - 1. systemd names none of them for us:
    // they are matched to the config by the address they are bound to.
    for (int k = 0; k < n; ++k) {
      Group g;
      g.label = "systemd socket " + std::to_string(k);
      g.fds.push_back(3 + k);
      ::fcntl(3 + k, F_SETFD, FD_CLOEXEC);
      in.groups_.push_back(std::move(g));
    }
    in.source_ = "systemd";
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return in;
}

std::vector<int> InheritedSockets::take(const std::string& label, const SocketAddress& addr) {
  for (Group& g : groups_)
    if (!g.taken && g.label == label) {
      g.taken = true;
      return g.fds;
    }
  for (Group& g : groups_)
    if (!g.taken && !g.fds.empty() && same_address(g.fds.front(), addr)) {
      g.taken = true;
      return g.fds;
    }
  return {};
}

void InheritedSockets::close_all() {
  for (Group& g : groups_) {
    if (!g.taken)
      log::warn("inherited listening socket not in the config: closed",
                {{"socket", g.label}, {"from", source_}});
    for (int fd : g.fds) ::close(fd);
  }
  groups_.clear();
}

// ---- TableSync

TableSync::TableSync(uv_loop_t* loop, Workers& workers, int fd, HandoverDecoder::Side side)
    : loop_(loop), workers_(workers), decoder_(side, 0), fd_(fd) {}

TableSync::~TableSync() { close(); }

void TableSync::start() {
  pipe_ = std::make_unique<uv_pipe_t>().release();  // freed by close_and_free
  uv_pipe_init(loop_, pipe_, 0);
  pipe_->data = this;
  if (uv_pipe_open(pipe_, fd_) != 0) {
    ::close(fd_);
    end("cannot use the hand-over socket");
    return;
  }
  async_ = std::make_unique<uv_async_t>().release();
  uv_async_init(loop_, async_, async_cb);
  async_->data = this;
  // Neither keeps the loop alive: the process ends when its servers have stopped.
  uv_unref(reinterpret_cast<uv_handle_t*>(pipe_));
  uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  workers_.table().set_observer(this);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(pipe_),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static char chunk[64 * 1024];  // main loop only; consumed before the next read
        *buf = uv_buf_init(chunk, sizeof chunk);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* self = static_cast<TableSync*>(s->data);
        if (!self) return;
        if (n < 0) {
          self->end(n == UV_EOF ? "the other process closed the hand-over" : uv_strerror(static_cast<int>(n)));
          return;
        }
        self->on_bytes(buf->base, static_cast<size_t>(n));
      });
}

void TableSync::on_bytes(const char* data, size_t n) {
  decoder_.feed(std::string_view(data, n));
  HandoverRecord r;
  AffinityTable::Quiet quiet;  // what the peer learnt is not sent back to it
  for (;;) {
    HandoverDecoder::Status st = decoder_.next(r);
    if (st == HandoverDecoder::Status::NeedMore) return;
    if (st == HandoverDecoder::Status::Error) {
      end("hand-over stream refused: " + decoder_.error());
      return;
    }
    switch (r.kind) {
      case HandoverRecord::Kind::Ready:
        if (on_ready) on_ready(r.pid);
        break;
      case HandoverRecord::Kind::Learn:
        workers_.learn_handed_over(r);
        break;
      case HandoverRecord::Kind::Forget:
        workers_.table().forget(r.sid);
        break;
      default:
        break;  // the snapshot is read before the loop runs (receive_handover)
    }
    if (!pipe_) return;  // on_ready may have ended us
  }
}

void TableSync::learnt(std::string_view sid, uint16_t backend, int64_t idle_ms) {
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (pending_.size() >= kMaxPending) {
    overflowed_ = true;
    return;
  }
  pending_.push_back({std::string(sid), backend, idle_ms});
  if (pending_.size() == 1) uv_async_send(async_);
}

void TableSync::forgotten(std::string_view sid) {
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (pending_.size() >= kMaxPending) {
    overflowed_ = true;
    return;
  }
  pending_.push_back({std::string(sid), -1, 0});
  if (pending_.size() == 1) uv_async_send(async_);
}

void TableSync::async_cb(uv_async_t* a) {
  if (auto* self = static_cast<TableSync*>(a->data)) self->flush();
}

void TableSync::hold(bool on) {
  held_ = on;
  if (!on) flush();
}

void TableSync::flush() {
  if (held_) return;
  std::vector<Pending> batch;
  bool overflowed;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
    overflowed = overflowed_;
    overflowed_ = false;
  }
  if (overflowed)
    log::warn("upgrade: the other process reads too slowly; some sessions were not shared");
  if (batch.empty() || !pipe_) return;
  std::string out;
  const Router& router = workers_.main().router();
  for (const Pending& p : batch) {
    if (p.backend < 0) {
      append_handover_forget(out, p.sid);
    } else if (static_cast<size_t>(p.backend) < router.backends().size()) {
      append_handover_entry(out, '+', p.sid,
                            router.backends()[static_cast<size_t>(p.backend)].config.name,
                            p.idle_ms);
    }
  }
  send(std::move(out));
}

void TableSync::send(std::string bytes) {
  if (!pipe_ || bytes.empty()) return;
  struct Write {
    uv_write_t req;
    std::string bytes;
  };
  auto w = std::make_unique<Write>();
  w->bytes = std::move(bytes);
  w->req.data = w.get();
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  int r = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(pipe_), &buf, 1,
                   [](uv_write_t* req, int) { std::unique_ptr<Write> owned(static_cast<Write*>(req->data)); });
  if (r == 0) w.release();  // owned by the write until its callback
}

void TableSync::end(const std::string& why) {
  if (closed_ && !pipe_) return;
  close();
  if (on_end) on_end(why);
}

void TableSync::close() {
  workers_.table().set_observer(nullptr);
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    pending_.clear();
  }
  close_and_free(pipe_);
  close_and_free(async_);
}

// ---- Upgrader (old process)

Upgrader::Upgrader(uv_loop_t* loop, Workers& workers, std::string exe, std::vector<std::string> args)
    : loop_(loop), workers_(workers), exe_(std::move(exe)), args_(std::move(args)) {}

Upgrader::~Upgrader() { close(); }

void Upgrader::start() {
  if (running_ || ready_) {
    log::warn("upgrade refused: one is already under way", {{"pid", child_pid_}});
    return;
  }
  if (workers_.main().draining()) {
    log::warn("upgrade refused: this process is stopping");
    return;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log::error("upgrade failed: socketpair", {{"error", std::strerror(errno)}});
    return;
  }
  // Child fds: 0-2 as ours, 3 the hand-over socket, then every listening socket.
  std::vector<Workers::Sockets> sockets = workers_.listening_sockets();
  std::vector<uv_stdio_container_t> stdio(4);
  for (int k = 0; k < 3; ++k) {
    stdio[static_cast<size_t>(k)].flags = UV_INHERIT_FD;
    stdio[static_cast<size_t>(k)].data.fd = k;
  }
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = sv[1];
  std::string listen_env;
  for (const Workers::Sockets& s : sockets) {
    if (!listen_env.empty()) listen_env += ';';
    append_escaped(listen_env, s.label);
    listen_env += '=';
    for (size_t k = 0; k < s.fds.size(); ++k) {
      if (k) listen_env += ',';
      listen_env += std::to_string(stdio.size());
      uv_stdio_container_t c;
      c.flags = UV_INHERIT_FD;
      c.data.fd = s.fds[k];
      stdio.push_back(c);
    }
  }
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view v(*e);
    if (v.rfind("STICKYD_UPGRADE_FD=", 0) == 0 || v.rfind("STICKYD_LISTEN_FDS=", 0) == 0 ||
        v.rfind("LISTEN_", 0) == 0)
      continue;
    env.emplace_back(v);
  }
  env.push_back(std::string(kUpgradeFdEnv) + "=3");
  env.push_back(std::string(kListenFdsEnv) + "=" + listen_env);
  std::vector<char*> envp, argv;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (std::string& a : args_) argv.push_back(a.data());
  argv.push_back(nullptr);

  uv_process_options_t opts{};
  opts.file = exe_.c_str();
  opts.args = argv.data();
  opts.env = envp.data();
  opts.exit_cb = exit_cb;
  opts.stdio_count = static_cast<int>(stdio.size());
  opts.stdio = stdio.data();
  process_ = std::make_unique<uv_process_t>().release();  // freed by close_and_free
  process_->data = this;
  int r = uv_spawn(loop_, process_, &opts);
  ::close(sv[1]);
  if (r != 0) {
    ::close(sv[0]);
    // libuv initialises the handle even when the spawn fails: it is closed like any other.
    close_and_free(process_);
    log::error("upgrade failed: cannot start the new binary; still serving",
               {{"binary", exe_}, {"error", uv_strerror(r)}});
    return;
  }
  child_pid_ = process_->pid;
  running_ = true;
  uv_unref(reinterpret_cast<uv_handle_t*>(process_));

  sync_ = std::make_unique<TableSync>(loop_, workers_, sv[0], HandoverDecoder::Side::Old);
  sync_->on_ready = [this](int64_t pid) {
    if (!running_) return;
    running_ = false;
    ready_ = true;
    uv_timer_stop(timer_);
    log::info("upgrade: the new process serves; this one stops accepting and drains",
              {{"pid", pid}});
    if (on_ready) on_ready(pid);
  };
  sync_->on_end = [this](const std::string& why) {
    // The new process's exit (or the ready deadline) says why it failed, with its status.
    if (running_) log::debug("upgrade: hand-over socket closed", {{"why", why}});
  };
  // Report learnt sessions from now on, then snapshot: what is learnt meanwhile reaches the
  // new process twice at worst, never not at all.
  sync_->hold(true);
  sync_->start();
  // The snapshot is built on libuv's thread pool: walking and encoding a million sessions
  // takes about half a second, which this loop's clients must not wait for.
  struct Snapshot {
    uv_work_t req;
    Upgrader* self;
    std::vector<std::string> names;  // by backend index; empty: removed
    AffinityTable* table;
    int64_t now;
    std::string bytes;
    size_t count = 0;
  };
  auto snap = std::make_unique<Snapshot>();
  snap->self = this;
  snap->table = &workers_.table();
  snap->now = workers_.main().now_ms();
  for (const BackendState& b : workers_.main().router().backends())
    snap->names.push_back(b.config.removed ? std::string() : b.config.name);
  snap->req.data = snap.get();
  int q = uv_queue_work(
      loop_, &snap->req,
      [](uv_work_t* req) {
        auto* sn = static_cast<Snapshot*>(req->data);
        std::string body;
        sn->table->for_each(
            [sn, &body](std::string_view sid, uint16_t b, int64_t ttl, bool) {
              if (b >= sn->names.size() || sn->names[b].empty()) return;
              append_handover_entry(body, 'e', sid, sn->names[b], ttl);
              ++sn->count;
            },
            sn->now);
        append_handover_header(sn->bytes, sn->count);
        sn->bytes += body;
        append_handover_end(sn->bytes);
      },
      [](uv_work_t* req, int) {
        std::unique_ptr<Snapshot> sn(static_cast<Snapshot*>(req->data));
        Upgrader* self = sn->self;
        if (!self->sync_ || !self->sync_->open()) return;  // the upgrade failed meanwhile
        log::info("upgrade: affinity table sent", {{"sessions", sn->count}, {"bytes", sn->bytes.size()}});
        self->sync_->send(std::move(sn->bytes));
        self->sync_->hold(false);  // then what was learnt meanwhile
      });
  if (q != 0) {
    uv_process_kill(process_, SIGTERM);
    abandon(std::string("cannot build the table snapshot: ") + uv_strerror(q));
    return;
  }
  snap.release();  // owned by the work request until its after-work callback
  log::info("upgrade: new process started; handing over",
            {{"pid", child_pid_}, {"binary", exe_}, {"sockets", stdio.size() - 4}});

  timer_ = std::make_unique<uv_timer_t>().release();
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  uv_timer_start(timer_, timer_cb, kReadyTimeoutMs, 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
}

void Upgrader::exit_cb(uv_process_t* p, int64_t status, int term_signal) {
  auto* self = static_cast<Upgrader*>(p->data);
  if (!self) return;
  std::string how = term_signal ? "killed by signal " + std::to_string(term_signal)
                                : "exit status " + std::to_string(status);
  if (self->running_) {
    self->abandon("the new process ended before serving (" + how + ")");
  } else if (self->ready_) {
    log::warn("upgrade: the new process ended", {{"pid", self->child_pid_}, {"how", how}});
  }
  if (self->process_ == p) close_and_free(self->process_);
}

void Upgrader::timer_cb(uv_timer_t* t) {
  auto* self = static_cast<Upgrader*>(t->data);
  if (!self || !self->running_) return;
  if (self->process_) uv_process_kill(self->process_, SIGTERM);
  self->abandon("the new process did not serve within " + std::to_string(kReadyTimeoutMs / 1000) + " s");
}

void Upgrader::abandon(const std::string& why) {
  running_ = false;
  log::error("upgrade failed: " + why + "; still serving", {{"pid", child_pid_}});
  if (sync_) {
    sync_->on_end = nullptr;
    sync_->close();
  }
  if (timer_) uv_timer_stop(timer_);
}

void Upgrader::close() {
  if (sync_) {
    sync_->on_end = nullptr;
    sync_->close();
  }
  close_and_free(timer_);
  close_and_free(process_);
}

// ---- the new process

ReceivedHandover receive_handover(size_t max_entries) {
  ReceivedHandover out;
  const char* v = std::getenv(kUpgradeFdEnv);
  if (!v) return out;
  std::string value = v;
  ::unsetenv(kUpgradeFdEnv);
  int fd;
  if (!parse_fd(value, fd) || ::fcntl(fd, F_GETFD) < 0) {
    log::error("upgrade: no usable hand-over socket; starting with an empty table",
               {{kUpgradeFdEnv, value}});
    return out;
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  out.fd = fd;
  HandoverDecoder decoder(HandoverDecoder::Side::New, max_entries);
  HandoverRecord r;
  char chunk[64 * 1024];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kSnapshotTimeoutMs);
  std::string why;
  while (why.empty()) {
    HandoverDecoder::Status st = decoder.next(r);
    if (st == HandoverDecoder::Status::Record) {
      if (r.kind == HandoverRecord::Kind::SnapshotEnd) break;
      if (r.kind == HandoverRecord::Kind::Entry) out.entries.push_back(std::move(r));
      continue;
    }
    if (st == HandoverDecoder::Status::Error) {
      why = decoder.error();
      break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    int pr = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      why = "no complete table within " + std::to_string(kSnapshotTimeoutMs / 1000) + " s";
      break;
    }
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      why = "the old process closed the hand-over before the end of the table";
      break;
    }
    decoder.feed(std::string_view(chunk, static_cast<size_t>(n)));
  }
  if (!why.empty()) {
    log::error("upgrade: affinity hand-over refused; starting with an empty table",
               {{"error", why}});
    out.entries.clear();
    // Deltas cannot follow a broken snapshot: the stream is unusable.
    ::close(fd);
    out.fd = -1;
  }
  return out;
}

bool write_pid_file(const std::string& path) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << getpid() << '\n';
    if (!f.flush()) {
      log::error("cannot write the pid file", {{"path", tmp}, {"error", std::strerror(errno)}});
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    log::error("cannot write the pid file", {{"path", path}, {"error", std::strerror(errno)}});
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

void remove_pid_file(const std::string& path) {
  std::ifstream f(path);
  long pid = 0;
  if (f >> pid && pid == static_cast<long>(getpid())) ::unlink(path.c_str());
}

}  // namespace stickyd
