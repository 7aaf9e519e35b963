// Workers: N event loops (threads) serving one config.
//
// Every worker is a whole Server on its own libuv loop, accepting on the same addresses
// through SO_REUSEPORT (the kernel spreads new connections over them). Connections never
// move between workers; what makes sessions sticky whichever worker accepts a request is
// what the workers share (SharedState): one AffinityTable (sharded, locked per shard), one
// set of TLS contexts (one session cache and one ticket key ring, so resumption works on any
// worker), and the connection limits. Worker 0 runs on the main loop and owns what exists
// once: signals, health checks, the admin API and the table's expiry sweep. The others
// learn about health, admin and config changes through their Mailbox: a message queue
// drained on their own loop, so a worker's Server is only ever touched by its own thread.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "stickyd/affinity.hpp"
#include "stickyd/balancer.hpp"
#include "stickyd/config.hpp"

namespace stickyd {

class Server;
class InheritedSockets;
struct HandoverRecord;
namespace tls {
class ServerContext;
class ClientContext;
}  // namespace tls

// A queue of tasks run on one worker's loop thread.
class Mailbox {
 public:
  using Task = std::function<void(Server&)>;
  Mailbox() = default;
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // From any thread: false (task dropped) when the worker is not running.
  bool post(Task task);
  // Posts and waits until the task has run (at most `timeout`): false when it did not run in
  // time. Never call it on the worker's own thread; workers other than 0 never call it.
  bool call(Task task, std::chrono::milliseconds timeout);
  // On the worker's thread: start receiving for `server` / stop (so its loop can end).
  void open(uv_loop_t* loop, Server& server);
  void close();

 private:
  static void wake_cb(uv_async_t* a);
  std::mutex mu_;
  std::vector<Task> queue_;
  uv_async_t* async_ = nullptr;  // heap: freed by its close callback
  Server* server_ = nullptr;
};

struct SharedState {
  explicit SharedState(const Config& cfg, size_t workers);

  size_t workers() const { return mailboxes.size(); }

  AffinityTable table;
  SharedBalancer balancer;
  std::vector<std::unique_ptr<Mailbox>> mailboxes;  // one per worker, index = worker

  // TLS contexts built by worker 0 (at start and on reload), used by every worker.
  std::mutex tls_mu;
  std::vector<std::shared_ptr<tls::ServerContext>> listener_tls;
  std::vector<std::shared_ptr<tls::ClientContext>> backend_tls;

  // Connection limits count across workers.
  std::atomic<size_t> clients{0};
  std::mutex ip_mu;
  std::unordered_map<std::string, uint32_t> per_ip;
};

// `workers: 0` means one per core (as libuv counts them, cgroup/affinity limits included).
size_t worker_count(const Config& cfg);

class Workers {
 public:
  // Worker 0 runs on `main_loop`; the others get their threads in start().
  Workers(uv_loop_t* main_loop, Config cfg);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  // What a process replacing another one starts with (upgrade.hpp).
  struct Inherit {
    InheritedSockets* sockets = nullptr;  // listening sockets to adopt instead of binding
    const std::vector<HandoverRecord>* sessions = nullptr;  // the old process's table
  };
  // Binds (or adopts) every listener in every worker; false (logged, everything stopped) on
  // a failure.
  bool start(const Inherit& inherit);
  bool start();
  Server& main() { return *main_; }
  size_t size() const { return shared_->workers(); }
  AffinityTable& table() { return shared_->table; }

  // Every listening socket of every worker, by label (upgrade.hpp), for SIGUSR2.
  struct Sockets {
    std::string label;
    std::vector<int> fds;
  };
  std::vector<Sockets> listening_sockets();

  // Main loop: a session handed over by the other process (upgrade.hpp) is learnt now when
  // its backend is known, else kept until discovery finds that backend (its time left still
  // running): discovered backends are not in the file, so the new process knows them only
  // once its first DNS answers arrive. False when it was dropped (no room).
  bool learn_handed_over(const HandoverRecord& r);

  void drain(Millis grace);   // SIGTERM/SIGINT, every worker
  void reload(Config next);   // SIGHUP: worker 0 first (it builds the TLS contexts), then the others
  void stop();
  // After the main loop ended: waits for the other workers' loops to end.
  void join();

 private:
  void run_worker(size_t index, Config cfg, std::promise<bool>* started);
  void import_sessions(const std::vector<HandoverRecord>& sessions);
  void retry_handed_over();  // discovery changed the backend set

  struct WaitingSession {
    std::string sid, backend;
    int64_t expires_at;
  };
  std::vector<WaitingSession> waiting_;  // handed-over sessions of backends not known yet

  uv_loop_t* main_loop_;
  Config config_;  // as started (listen ports resolved)
  std::unique_ptr<SharedState> shared_;
  std::unique_ptr<Server> main_;
  std::vector<std::thread> threads_;
  // Inherited listening sockets, per listen entry, per worker (empty: bind).
  std::vector<std::vector<std::vector<int>>> adopt_;
  int admin_fd_ = -1;
};

}  // namespace stickyd
