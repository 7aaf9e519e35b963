#include "stickyd/health.hpp"

#include <llhttp.h>

#include <algorithm>
#include <random>

#include "stickyd/log.hpp"
#include "stickyd/net.hpp"

namespace stickyd {

namespace {
constexpr size_t kMaxCheckHead = 64 * 1024;  // response head bytes before giving up

std::string error_text(int status) { return uv_strerror(status); }

uint64_t interval_ms(const Config& cfg) {
  return static_cast<uint64_t>(std::max<int64_t>(1, cfg.health.interval.count()));
}

uint64_t random_below(uint64_t n) {
  static std::mt19937_64 rng(uv_hrtime() ^ static_cast<uint64_t>(uv_os_getpid()));
  return n ? rng() % n : 0;
}
}  // namespace

const char* to_string(Health h) {
  switch (h) {
    case Health::Unchecked: return "unchecked";
    case Health::Up: return "up";
    case Health::Down: return "down";
  }
  return "?";
}

// One check: connect, send the request, parse the response head, close. The object deletes
// itself once libuv has closed its handles; the checker forgets it (detach) when it stops.
class HealthChecker::Probe final : public Socket {
 public:
  Probe(HealthChecker* owner, int backend, Millis timeout)
      : Socket(owner->loop_), owner_(owner), backend_(backend), timeout_(timeout) {
    llhttp_init(&parser_, HTTP_RESPONSE, settings());
    parser_.data = this;
  }

  void begin(const SocketAddress& addr) {
    set_deadline(timeout_);
    connect_req_.data = this;
    int r = uv_tcp_connect(&connect_req_, tcp(), addr.sa(), connect_cb);
    if (r != 0) finish(false, "connect: " + error_text(r));
  }

  void detach() { owner_ = nullptr; }

 protected:
  void on_read(const char* data, size_t len) override {
    head_bytes_ += len;
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_PAUSED && head_done_) {
      int st = llhttp_get_status_code(&parser_);
      int want = owner_ ? owner_->cfg_.health.expect_status : 200;
      bool ok = want == 0 ? st >= 200 && st < 400 : st == want;
      std::string reason = "status " + std::to_string(st);
      if (!ok)
        reason += want == 0 ? " (expected 2xx/3xx)" : " (expected " + std::to_string(want) + ")";
      finish(ok, reason);
      return;
    }
    if (err != HPE_OK) {
      const char* why = llhttp_get_error_reason(&parser_);
      finish(false, std::string("invalid response: ") + llhttp_errno_name(err) + " " +
                        log::escape(why ? why : "", 80));
      return;
    }
    if (head_bytes_ > kMaxCheckHead) finish(false, "response head too large");
  }

  void on_eof() override { finish(false, "connection closed before response head"); }
  void on_read_error(int status) override { finish(false, "read: " + error_text(status)); }
  void on_write_error(int status) override { finish(false, "write: " + error_text(status)); }

  void on_deadline() override {
    std::string ms = std::to_string(timeout_.count()) + "ms";
    finish(false, connected_ ? "timeout: no response head within " + ms
                             : "connect: timeout after " + ms);
  }

  void on_closed() override { delete this; }

 private:
  static void connect_cb(uv_connect_t* req, int status) {
    auto* self = static_cast<Probe*>(req->data);
    if (status == UV_ECANCELED || self->closing()) return;
    if (status < 0) {
      self->finish(false, "connect: " + error_text(status));
      return;
    }
    self->connected_ = true;
    uv_tcp_nodelay(self->tcp(), 1);
    self->start_reading();
    if (!self->owner_) return;
    if (!self->send(self->owner_->backends_[static_cast<size_t>(self->backend_)].request))
      self->finish(false, "write: connection broken");
  }

  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_headers_complete = cb_headers_complete;
      return st;
    }();
    return &s;
  }

  static int cb_headers_complete(llhttp_t* p) {
    int st = llhttp_get_status_code(p);
    if (st >= 100 && st < 200 && st != 101) return 0;  // interim head: the final one follows
    static_cast<Probe*>(p->data)->head_done_ = true;
    return HPE_PAUSED;
  }

  void finish(bool ok, const std::string& reason) {
    if (done_) return;
    done_ = true;
    close();
    if (HealthChecker* o = owner_) {
      owner_ = nullptr;
      o->check_done(backend_, ok, reason);
    }
  }

  HealthChecker* owner_;
  int backend_;
  Millis timeout_;
  uv_connect_t connect_req_{};
  llhttp_t parser_{};
  size_t head_bytes_ = 0;
  bool connected_ = false;
  bool head_done_ = false;
  bool done_ = false;
};

HealthChecker::HealthChecker(uv_loop_t* loop, const Config& cfg, ChangeFn on_change)
    : loop_(loop), cfg_(cfg), on_change_(std::move(on_change)) {
  target_ = cfg.health.path.empty() ? cfg.path + "?EIO=4&transport=polling" : cfg.health.path;
  const std::string method = cfg.health.method.empty() ? "GET" : cfg.health.method;
  backends_.resize(cfg.backends.size());
  for (size_t i = 0; i < backends_.size(); ++i) {
    Backend& b = backends_[i];
    b.owner = this;
    b.index = static_cast<int>(i);
    b.request = method + " " + target_ + " HTTP/1.1\r\nHost: " + cfg.backends[i].address.text +
                "\r\nUser-Agent: stickyd-health\r\nConnection: close\r\n\r\n";
    b.timer = new uv_timer_t;
    uv_timer_init(loop, b.timer);
    b.timer->data = &b;
  }
}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::carry_over(const HealthChecker& previous, const std::vector<size_t>& fresh,
                               const std::vector<size_t>& await_check) {
  for (size_t i = 0; i < backends_.size() && i < previous.backends_.size(); ++i) {
    if (std::find(fresh.begin(), fresh.end(), i) != fresh.end()) continue;
    const Backend& p = previous.backends_[i];
    Backend& b = backends_[i];
    b.state = p.state;
    b.successes = p.successes;
    b.failures = p.failures;
    b.passive_failures = p.passive_failures;
    b.checks = p.checks;
    b.probation = p.probation;
    b.awaiting_first = p.awaiting_first;
    b.reason = p.reason;
  }
  if (!cfg_.health.enabled) return;  // nothing would ever bring them up
  for (size_t i : await_check) {
    if (i >= backends_.size()) continue;
    Backend& b = backends_[i];
    b.state = Health::Down;
    b.awaiting_first = true;
    b.reason = "new: waiting for its first health check";
  }
}

void HealthChecker::start() {
  if (started_ || stopped_ || !cfg_.health.enabled) return;
  started_ = true;
  const uint64_t interval = interval_ms(cfg_);
  const uint64_t n = backends_.size();
  for (uint64_t i = 0; i < n; ++i) {
    // Slot i of n over the first interval, at a random point inside it: backends never fire
    // together, and replicas sharing a config do not synchronise either.
    uint64_t lo = interval * i / n, hi = interval * (i + 1) / n;
    uv_timer_start(backends_[i].timer, timer_cb, lo + random_below(hi - lo), 0);
  }
}

void HealthChecker::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (Backend& b : backends_) {
    if (b.probe) {
      b.probe->detach();
      b.probe->close();  // deletes itself from its close callback
      b.probe = nullptr;
    }
    if (b.timer) {
      b.timer->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(b.timer),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      b.timer = nullptr;
    }
  }
}

Health HealthChecker::state(int backend) const {
  if (backend < 0 || static_cast<size_t>(backend) >= backends_.size()) return Health::Unchecked;
  return backends_[static_cast<size_t>(backend)].state;
}

uint64_t HealthChecker::checks_run(int backend) const {
  if (backend < 0 || static_cast<size_t>(backend) >= backends_.size()) return 0;
  return backends_[static_cast<size_t>(backend)].checks;
}

const std::string& HealthChecker::last_reason(int backend) const {
  static const std::string none;
  if (backend < 0 || static_cast<size_t>(backend) >= backends_.size()) return none;
  return backends_[static_cast<size_t>(backend)].reason;
}

void HealthChecker::timer_cb(uv_timer_t* t) {
  auto* b = static_cast<Backend*>(t->data);
  if (!b) return;
  HealthChecker* self = b->owner;
  if (self->stopped_) return;
  if (self->cfg_.health.enabled) {
    if (b->probe) {
      b->due = true;  // only when timeout >= interval: start the next one as this one ends
      return;
    }
    self->start_check(*b);
    return;
  }
  // Active checks off: the passive "retry after" window has elapsed.
  if (b->state == Health::Down) {
    b->probation = true;
    b->passive_failures = 0;
    self->transition(*b, Health::Up,
                     "retry after " + std::to_string(self->cfg_.health.interval.count()) + "ms");
  }
}

void HealthChecker::start_check(Backend& b) {
  b.due = false;
  uv_timer_start(b.timer, timer_cb, interval_ms(cfg_), 0);
  auto* p = new Probe(this, b.index, cfg_.health.timeout);
  b.probe = p;
  p->begin(cfg_.backends[static_cast<size_t>(b.index)].address);  // may report at once
}

void HealthChecker::check_done(int backend, bool ok, const std::string& reason) {
  Backend& b = backends_[static_cast<size_t>(backend)];
  b.probe = nullptr;
  ++b.checks;
  const uint32_t rise = std::max<uint32_t>(1, cfg_.health.rise);
  const uint32_t fall = std::max<uint32_t>(1, cfg_.health.fall);
  if (ok) {
    b.failures = 0;
    ++b.successes;
    if (b.state == Health::Unchecked || b.awaiting_first ||
        (b.state == Health::Down && b.successes >= rise)) {
      b.awaiting_first = false;
      transition(b, Health::Up, reason);
    }
  } else {
    b.successes = 0;
    ++b.failures;
    log::debug("health check failed",
               {{"backend", cfg_.backends[static_cast<size_t>(backend)].name},
                {"reason", reason},
                {"failures", b.failures}});
    if (b.state != Health::Down && b.failures >= fall) transition(b, Health::Down, reason);
  }
  if (!stopped_ && b.due && !b.probe) start_check(b);
}

void HealthChecker::report_traffic(int backend, bool ok) {
  if (stopped_ || backend < 0 || static_cast<size_t>(backend) >= backends_.size()) return;
  Backend& b = backends_[static_cast<size_t>(backend)];
  if (ok) {
    b.passive_failures = 0;
    b.probation = false;
    return;
  }
  const uint32_t fall = cfg_.health.passive_fall;
  if (fall == 0 || b.state == Health::Down) return;
  ++b.passive_failures;
  if (b.probation) {
    passive_down(b, "passive: traffic failure during retry");
  } else if (b.passive_failures >= fall) {
    passive_down(b, "passive: " + std::to_string(b.passive_failures) +
                        " consecutive traffic failures");
  }
}

void HealthChecker::passive_down(Backend& b, std::string reason) {
  b.passive_failures = 0;
  b.probation = false;
  b.successes = 0;  // active checks need `rise` fresh successes to bring it back
  if (!cfg_.health.enabled)
    uv_timer_start(b.timer, timer_cb, interval_ms(cfg_), 0);  // the retry-after window
  transition(b, Health::Down, std::move(reason));
}

void HealthChecker::transition(Backend& b, Health to, std::string reason) {
  Health from = b.state;
  b.state = to;
  b.reason = reason;
  const std::string& name = cfg_.backends[static_cast<size_t>(b.index)].name;
  if (to == Health::Down) {
    log::warn("backend down", {{"backend", name}, {"reason", reason}, {"from", to_string(from)},
                               {"checks", b.checks}});
  } else {
    log::info("backend up", {{"backend", name}, {"reason", reason}, {"from", to_string(from)},
                             {"checks", b.checks}});
  }
  // `reason` is our own copy: on_change may re-enter (report_traffic, stop) and change b.
  if (on_change_) on_change_(b.index, to, reason);
}

}  // namespace stickyd
