// Replacing a running stickyd without refusing a connection or forgetting a session.
//
// SIGUSR2 (nginx's binary upgrade, HAProxy's seamless reload): the running process starts the
// binary at its own path with its own arguments, passing it every listening socket (the same
// kernel sockets: nothing is closed, so no connection is refused and none waits in a backlog
// that disappears) and, on a socket pair, its affinity table (handover.hpp). The new process
// adopts the sockets, loads the table, and once it serves says `ready`; only then does the
// old one stop accepting and drain as on SIGTERM. A new process that fails (bad config,
// crash, no `ready` in time) leaves the old one serving, with a log line. While both run,
// each streams the sessions it learns to the other, so a client whose next request reaches
// the other process is routed the same way.
//
// systemd socket activation (LISTEN_FDS) gives a packaged service the same property across
// `systemctl restart`: systemd holds the sockets.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "stickyd/affinity.hpp"
#include "stickyd/config.hpp"
#include "stickyd/handover.hpp"

namespace stickyd {

class Workers;

// Environment of a process started by an upgrade.
constexpr const char* kUpgradeFdEnv = "STICKYD_UPGRADE_FD";    // the hand-over socket
constexpr const char* kListenFdsEnv = "STICKYD_LISTEN_FDS";    // label=fd,fd;label=fd

std::string listen_label(const std::string& address_text);  // "listen <text>"
std::string admin_label(const std::string& address_text);   // "admin <text>"

// Listening sockets a process starts with, from the process it replaces or from systemd.
class InheritedSockets {
 public:
  // Reads STICKYD_LISTEN_FDS, else LISTEN_PID/LISTEN_FDS (when LISTEN_PID is this process),
  // and unsets them so that nothing started later inherits them by mistake.
  static InheritedSockets from_environment();
  // Parses a STICKYD_LISTEN_FDS value; false on anything malformed.
  bool parse(std::string_view value);

  bool empty() const { return groups_.empty(); }
  const char* source() const { return source_; }
  // The sockets passed for `label`, else the ones bound to `addr` (systemd knows no labels);
  // they leave the pool. Empty when none.
  std::vector<int> take(const std::string& label, const SocketAddress& addr);
  // Closes every socket: the ones taken after their users dup()ed them, the others with a log
  // line (an address the new config no longer has).
  void close_all();

 private:
  struct Group {
    std::string label;
    std::vector<int> fds;
    bool taken = false;
  };
  std::vector<Group> groups_;
  const char* source_ = "";
};

// One end of the hand-over socket, on the main loop: sends this process's learnt/forgotten
// sessions, applies the other process's. `on_ready` runs when the peer's `ready` arrives
// (old side), `on_end` when the peer is gone or broke the protocol.
class TableSync final : public AffinityTable::Observer {
 public:
  TableSync(uv_loop_t* loop, Workers& workers, int fd, HandoverDecoder::Side side);
  ~TableSync() override;
  TableSync(const TableSync&) = delete;
  TableSync& operator=(const TableSync&) = delete;

  std::function<void(int64_t pid)> on_ready;
  std::function<void(const std::string& why)> on_end;

  void start();               // reports learn/forget from now on, reads the peer
  void send(std::string bytes);  // raw bytes (snapshot, `ready`)
  void close();               // stops reporting and closes the socket
  // While held, reported sessions are queued, not sent (the snapshot must go first).
  void hold(bool on);
  bool open() const { return pipe_ != nullptr; }

  // AffinityTable::Observer (any worker thread)
  void learnt(std::string_view sid, uint16_t backend, int64_t idle_ms) override;
  void forgotten(std::string_view sid) override;

 private:
  struct Pending {
    std::string sid;
    int backend;  // -1: forgotten
    int64_t idle_ms;
  };
  static void async_cb(uv_async_t* a);
  void flush();
  void on_bytes(const char* data, size_t n);
  void end(const std::string& why);

  uv_loop_t* loop_;
  Workers& workers_;
  HandoverDecoder decoder_;
  uv_pipe_t* pipe_ = nullptr;    // heap: freed by its close callback
  uv_async_t* async_ = nullptr;  // heap: freed by its close callback
  std::mutex mu_;
  std::vector<Pending> pending_;
  bool overflowed_ = false;
  bool closed_ = false;
  bool held_ = false;  // main loop only
  int fd_;
};

// The old process's side of SIGUSR2.
class Upgrader {
 public:
  // `exe`: the binary's path as started (/proc/self/exe read at start, so a package upgrade
  // that replaced the file starts the new one); `args`: the command line, argv[0] included.
  Upgrader(uv_loop_t* loop, Workers& workers, std::string exe, std::vector<std::string> args);
  ~Upgrader();
  Upgrader(const Upgrader&) = delete;
  Upgrader& operator=(const Upgrader&) = delete;

  // Runs when the new process serves: the caller drains this one.
  std::function<void(int64_t pid)> on_ready;

  void start();  // SIGUSR2; a second one while an upgrade runs is refused with a log line
  void close();  // after the loop ended: closes what is left

 private:
  static void exit_cb(uv_process_t* p, int64_t status, int term_signal);
  static void timer_cb(uv_timer_t* t);
  void abandon(const std::string& why);

  uv_loop_t* loop_;
  Workers& workers_;
  std::string exe_;
  std::vector<std::string> args_;
  std::unique_ptr<TableSync> sync_;
  uv_process_t* process_ = nullptr;  // heap: freed by its close callback
  uv_timer_t* timer_ = nullptr;      // ready deadline; heap: freed by its close callback
  bool running_ = false;  // an upgrade is under way (until ready or failure)
  bool ready_ = false;
  int64_t child_pid_ = 0;
};

// The new process's side: reads the snapshot from STICKYD_UPGRADE_FD (blocking, before
// anything listens; Workers::start imports it). A malformed one is refused with a log line:
// the table starts empty. `fd` is -1 when this process was not started by an upgrade.
struct ReceivedHandover {
  int fd = -1;
  std::vector<HandoverRecord> entries;
};
ReceivedHandover receive_handover(size_t max_entries);

// --pid-file: written atomically (temporary file + rename) once the process serves; removed
// at exit only while it still names this process (a newer one may have taken over).
bool write_pid_file(const std::string& path);
void remove_pid_file(const std::string& path);

}  // namespace stickyd
