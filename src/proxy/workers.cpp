#include "stickyd/workers.hpp"

#include <condition_variable>
#include <cstdlib>
#include <future>

#include "stickyd/log.hpp"
#include "stickyd/net.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/upgrade.hpp"

namespace stickyd {

// ---- Mailbox

bool Mailbox::post(Task task) {
  std::lock_guard lock(mu_);
  if (!async_) return false;
  queue_.push_back(std::move(task));
  uv_async_send(async_);  // coalesces: one wake-up may carry several tasks
  return true;
}

bool Mailbox::call(Task task, std::chrono::milliseconds timeout) {
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto d = std::make_shared<Done>();  // outlives a timed-out wait: the task may still run
  bool posted = post([d, task = std::move(task)](Server& s) {
    task(s);
    std::lock_guard lock(d->mu);
    d->done = true;
    d->cv.notify_all();
  });
  if (!posted) return false;
  std::unique_lock lock(d->mu);
  return d->cv.wait_for(lock, timeout, [&] { return d->done; });
}

void Mailbox::open(uv_loop_t* loop, Server& server) {
  auto a = std::make_unique<uv_async_t>();
  uv_async_init(loop, a.get(), wake_cb);
  a->data = this;
  std::lock_guard lock(mu_);
  server_ = &server;
  async_ = a.release();  // owned by the loop until its close callback
}

void Mailbox::close() {
  uv_async_t* a;
  {
    std::lock_guard lock(mu_);
    a = async_;
    async_ = nullptr;
    queue_.clear();
  }
  close_and_free(a);
}

void Mailbox::wake_cb(uv_async_t* a) {
  auto* self = static_cast<Mailbox*>(a->data);
  if (!self) return;
  std::vector<Task> tasks;
  Server* server;
  {
    std::lock_guard lock(self->mu_);
    tasks.swap(self->queue_);
    server = self->server_;
  }
  for (Task& t : tasks) {
    t(*server);
    // A task may stop the server, which closes this mailbox: drop the rest then.
    std::lock_guard lock(self->mu_);
    if (!self->async_) break;
  }
}

// ---- SharedState

SharedState::SharedState(const Config& cfg, size_t workers) : table(cfg.affinity.max_sessions) {
  for (size_t k = 0; k < workers; ++k) mailboxes.push_back(std::make_unique<Mailbox>());
}

size_t worker_count(const Config& cfg) {
  if (cfg.workers > 0) return cfg.workers;
  unsigned n = uv_available_parallelism();
  return n == 0 ? 1 : (n > 64 ? 64 : n);
}

// ---- Workers

Workers::Workers(uv_loop_t* main_loop, Config cfg)
    : main_loop_(main_loop), config_(std::move(cfg)) {
  shared_ = std::make_unique<SharedState>(config_, worker_count(config_));
}


Workers::~Workers() {
  stop();
  join();
}

bool Workers::start() { return start(Inherit()); }

bool Workers::start(const Inherit& inherit) {
  size_t n = shared_->workers();
  adopt_.assign(config_.listen.size(), std::vector<std::vector<int>>(n));
  if (inherit.sockets) {
    for (size_t i = 0; i < config_.listen.size(); ++i) {
      const ListenConfig& lc = config_.listen[i];
      std::vector<int> fds = inherit.sockets->take(listen_label(lc.text()), lc.address);
      // Worker k serves the sockets j with j % n == k (the old process's SO_REUSEPORT group
      // keeps its spread when the worker count is the same); a worker left without one
      // shares one (several loops may accept on one socket).
      for (size_t j = 0; j < fds.size(); ++j) adopt_[i][j % n].push_back(fds[j]);
      for (size_t k = fds.size(); k < n && !fds.empty(); ++k) adopt_[i][k].push_back(fds[k % fds.size()]);
    }
    if (config_.admin.enabled) {
      std::vector<int> fds = inherit.sockets->take(admin_label(config_.admin.listen.text),
                                                   config_.admin.listen);
      if (!fds.empty()) admin_fd_ = fds.front();
    }
  }
  if (n > 1) {
    // Every worker binds the same address with SO_REUSEPORT; first make sure nothing else
    // holds it, and turn a port 0 into one port that all of them share.
    for (size_t i = 0; i < config_.listen.size(); ++i) {
      ListenConfig& lc = config_.listen[i];
      if (!adopt_[i][0].empty()) continue;  // inherited: held by us already
      int r = Listener::claim(lc.address);
      if (r != 0) {
        log::error("cannot listen", {{"address", lc.address.text}, {"error", uv_strerror(r)}});
        return false;
      }
    }
  }
  main_ = std::make_unique<Server>(main_loop_, config_, *shared_, 0);
  // Handed-over sessions of discovered backends wait for discovery to find them.
  main_->on_backends_changed = [this] { retry_handed_over(); };
  // Before anything accepts: a request of a handed-over session must find it.
  if (inherit.sessions) import_sessions(*inherit.sessions);
  main_->inherit(adopt_, admin_fd_);
  bool ok = main_->start();
  for (size_t k = 1; ok && k < n; ++k) {
    std::promise<bool> started;
    std::future<bool> done = started.get_future();
    threads_.emplace_back(&Workers::run_worker, this, k, config_, &started);
    ok = done.get();
  }
  // Every worker has its own dup() of the inherited sockets (or failed): the originals go.
  if (inherit.sockets) inherit.sockets->close_all();
  if (!ok) return false;
  main_->log_listening();
  return true;
}

void Workers::import_sessions(const std::vector<HandoverRecord>& sessions) {
  size_t before = waiting_.size();
  size_t imported = 0, dropped = 0;
  for (const HandoverRecord& r : sessions) {
    if (!learn_handed_over(r)) ++dropped;
    else ++imported;
  }
  log::info("upgrade: sessions taken over", {{"sessions", imported - (waiting_.size() - before)},
                                             {"waiting_for_discovery", waiting_.size() - before},
                                             {"dropped", dropped}});
}

bool Workers::learn_handed_over(const HandoverRecord& r) {
  int64_t now = main_->now_ms();
  int b = main_->router().find_backend(r.backend);
  if (b >= 0 && !main_->router().backend(b).config.removed) {
    AffinityTable::Quiet quiet;  // the other process knows it already
    shared_->table.learn(r.sid, static_cast<uint16_t>(b), r.ttl_ms, now);
    return true;
  }
  if (config_.discover.empty() || waiting_.size() >= config_.affinity.max_sessions) return false;
  waiting_.push_back({r.sid, r.backend, now + r.ttl_ms});
  return true;
}

void Workers::retry_handed_over() {
  if (waiting_.empty()) return;
  int64_t now = main_->now_ms();
  size_t learnt = 0;
  AffinityTable::Quiet quiet;
  std::erase_if(waiting_, [&](const WaitingSession& w) {
    if (w.expires_at <= now) return true;
    int b = main_->router().find_backend(w.backend);
    if (b < 0 || main_->router().backend(b).config.removed) return false;
    shared_->table.learn(w.sid, static_cast<uint16_t>(b), w.expires_at - now, now);
    ++learnt;
    return true;
  });
  if (learnt) log::info("upgrade: sessions of discovered backends taken over", {{"sessions", learnt}, {"still_waiting", waiting_.size()}});
}

std::vector<Workers::Sockets> Workers::listening_sockets() {
  std::vector<Sockets> out;
  for (const ListenConfig& lc : config_.listen) out.push_back({listen_label(lc.text()), {}});
  auto add = [&out](Server& s) {
    for (auto [index, fd] : s.listening_fds())
      if (index < out.size()) out[index].fds.push_back(fd);
  };
  add(*main_);
  for (size_t k = 1; k < shared_->workers(); ++k) {
    // Shared: a worker that answers after the timeout still finds it alive.
    struct Answer {
      std::mutex mu;
      std::vector<std::pair<size_t, int>> fds;
    };
    auto a = std::make_shared<Answer>();
    shared_->mailboxes[k]->call(
        [a](Server& s) {
          std::lock_guard lock(a->mu);
          a->fds = s.listening_fds();
        },
        std::chrono::seconds(1));
    std::lock_guard lock(a->mu);
    for (auto [index, fd] : a->fds)
      if (index < out.size()) out[index].fds.push_back(fd);
  }
  std::erase_if(out, [](const Sockets& s) { return s.fds.empty(); });
  if (int fd = main_->admin_fd(); fd >= 0) out.push_back({admin_label(config_.admin.listen.text), {fd}});
  return out;
}

void Workers::run_worker(size_t index, Config cfg, std::promise<bool>* started) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    Server server(&loop, std::move(cfg), *shared_, index);
    server.inherit(adopt_, -1);
    bool ok = server.start();
    if (!ok) server.stop();
    started->set_value(ok);  // `started` is gone once the main thread has read it
    uv_run(&loop, UV_RUN_DEFAULT);  // until the server stops (its mailbox closes)
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks of what the destructor closed
  uv_loop_close(&loop);
}

void Workers::drain(Millis grace) {
  // Wait until every other worker has closed its listeners, then worker 0 (which logs
  // "draining"): after SIGTERM, a new connection is refused at once rather than accepted by a
  // worker that has not heard of it yet.
  for (size_t k = 1; k < shared_->workers(); ++k)
    shared_->mailboxes[k]->call([grace](Server& s) { s.drain(grace); }, std::chrono::seconds(1));
  if (main_) main_->drain(grace);
}

void Workers::reload(Config next) {
  if (!main_) return;
  // Discovered backends are not in the file: worker 0 adds the ones it knows.
  main_->add_discovered(next);
  // Worker 0 first: it validates the TLS files and publishes the contexts the others take.
  if (!main_->reload(next)) return;
  for (size_t k = 1; k < shared_->workers(); ++k)
    shared_->mailboxes[k]->post([next](Server& s) { s.reload(next); });
}

void Workers::stop() {
  if (main_) main_->stop();
  for (size_t k = 1; k < shared_->workers(); ++k)
    shared_->mailboxes[k]->post([](Server& s) { s.stop(); });
}

void Workers::join() {
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace stickyd
