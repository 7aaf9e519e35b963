#include "stickyd/workers.hpp"

#include <condition_variable>
#include <cstdlib>
#include <future>

#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"

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
  if (!a) return;
  a->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(a),
           [](uv_handle_t* h) { std::unique_ptr<uv_async_t> owned(reinterpret_cast<uv_async_t*>(h)); });
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

bool Workers::start() {
  size_t n = shared_->workers();
  if (n > 1) {
    // Every worker binds the same address with SO_REUSEPORT; first make sure nothing else
    // holds it, and turn a port 0 into one port that all of them share.
    for (ListenConfig& lc : config_.listen) {
      int r = Listener::claim(lc.address);
      if (r != 0) {
        log::error("cannot listen", {{"address", lc.address.text}, {"error", uv_strerror(r)}});
        return false;
      }
    }
  }
  main_ = std::make_unique<Server>(main_loop_, config_, *shared_, 0);
  if (!main_->start()) return false;
  for (size_t k = 1; k < n; ++k) {
    std::promise<bool> started;
    std::future<bool> ok = started.get_future();
    threads_.emplace_back(&Workers::run_worker, this, k, config_, &started);
    if (!ok.get()) return false;
  }
  main_->log_listening();
  return true;
}

void Workers::run_worker(size_t index, Config cfg, std::promise<bool>* started) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    Server server(&loop, std::move(cfg), *shared_, index);
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
