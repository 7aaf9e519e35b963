// Active health checks (HAProxy-like) plus passive marking from real traffic.
//
// Active checks (cfg.health.enabled): once per `interval` per backend, connect to the backend
// address, send
//
//   <method> <target> HTTP/1.1\r\nHost: <address text>\r\nUser-Agent: stickyd-health\r\n
//   Connection: close\r\n\r\n
//
// and parse the response head with llhttp. The check succeeds iff the status equals
// `expect_status` (any 2xx/3xx when it is 0); interim 1xx heads are skipped. Connect plus
// response head are bounded together by `timeout`; a timeout, a refused or reset connection,
// a connection closed before the head, a head over 64 KiB or a parse error is a failure. The
// connection is closed as soon as the head is parsed: the body is never read.
//
// Target: `health.path` when set, else an Engine.IO polling handshake on Config::path
// ("/socket.io/?EIO=4&transport=polling"). That default works against any Socket.IO node but
// CREATES A REAL SESSION on it each time, which the node only drops after pingInterval +
// pingTimeout (45 s with the defaults): one stray session per backend per interval. A
// dedicated route (e.g. `path: /health` answered by a plain HTTP handler) is much cheaper.
//
// States: every backend starts Unchecked (the router should treat it as usable).
//   Unchecked -> Up     on the first successful check
//   Unchecked -> Down   after `fall` consecutive failed checks
//   Up        -> Down   after `fall` consecutive failed checks
//   Down      -> Up     after `rise` consecutive successful checks
// The first check of backend i fires in slot i of N equal slots of the first interval (at a
// random point inside the slot), so N backends never probe together; each next check starts
// one interval after the previous one started (right after it ends if it ran longer).
//
// Passive marking (report_traffic): a connect failure or reset of real traffic counts as a
// failure; `passive_fall` consecutive ones (0 = off) take the backend Down at once, from any
// state; any success resets the count. Traffic never brings a backend up by itself:
//   - active checks on: it comes back after `rise` successful checks, as usual;
//   - active checks off: after `interval` (a "retry after" window) it is marked Up again on
//     probation, so traffic can test it; while on probation a single traffic failure takes it
//     Down again for another window (a half-open circuit breaker), and the first success ends
//     the probation (back to needing `passive_fall` failures).
//
// Every transition is logged (warn for Down, info for Up) and reported through on_change.
//
// Threading and lifetime: everything runs on the loop's thread; nothing blocks. Each backend
// owns one uv_timer_t (scheduling, or the retry window) and at most one check connection (a
// Socket). stop() closes them all; the handles free themselves from their close callbacks, so
// the HealthChecker object may be destroyed as soon as stop() has returned, but the loop must
// still run once afterwards to release them (uv_run before uv_loop_close). The destructor calls
// stop() itself. on_change must not destroy the HealthChecker; it may call stop(), state()
// and report_traffic().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "stickyd/config.hpp"

namespace stickyd {

enum class Health : uint8_t { Unchecked, Up, Down };

const char* to_string(Health h);  // "unchecked", "up", "down"

class HealthChecker {
 public:
  // on_change(backend index, new state, reason): called on every transition.
  using ChangeFn = std::function<void(int backend, Health state, const std::string& reason)>;
  // The reason of a Down says the node answered the check (a wrong status): it is still
  // reachable, and its sessions can be moved off at a pace rather than dropped at once.
  static bool answered(std::string_view reason) { return reason.rfind("status ", 0) == 0; }

  // `cfg` must outlive this object. Creates the per-backend timers; starts nothing.
  HealthChecker(uv_loop_t* loop, const Config& cfg, ChangeFn on_change);
  // Calls stop(). The loop must run after this to release the closed handles.
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Schedules the active checks (first ones spread over the first interval). Does nothing
  // when cfg.health.enabled is false, after stop(), or on a second call.
  void start();
  // Closes every handle and in-flight check; no on_change call happens after it returns.
  // Idempotent. Passive marking is inert afterwards (states stay as they are).
  void stop();

  // After a reload: the states, counts and probation of `previous` (the checker the reload
  // replaces, stopped) carry over by backend index, so a reload neither resets `fall`/`rise`
  // counting nor logs transitions that did not happen. Indexes in `fresh` start anew (a new
  // backend, or one at a new address); with active checks on, those in `await_check` (new
  // discovered backends) start Down and come Up on their first successful check, so no
  // session is sent to an address nothing has checked yet.
  void carry_over(const HealthChecker& previous, const std::vector<size_t>& fresh,
                  const std::vector<size_t>& await_check);
  Health state(int backend) const;
  bool usable(int backend) const { return state(backend) != Health::Down; }

  // Result of a real connection attempt to `backend`: ok = false for a connect failure or a
  // reset, true for a connect that succeeded. May call on_change synchronously.
  void report_traffic(int backend, bool ok);

  uint64_t checks_run(int backend) const;              // completed active checks
  const std::string& last_reason(int backend) const;   // reason of the last transition
  const std::string& request_target() const { return target_; }
  int size() const { return static_cast<int>(backends_.size()); }

 private:
  class Probe;
  struct Backend {
    HealthChecker* owner = nullptr;
    int index = 0;
    uv_timer_t* timer = nullptr;  // heap: freed by its close callback, which may run after us
    Probe* probe = nullptr;       // in-flight check; deletes itself once closed
    Health state = Health::Unchecked;
    uint32_t successes = 0;       // consecutive active successes
    uint32_t failures = 0;        // consecutive active failures
    uint32_t passive_failures = 0;
    uint64_t checks = 0;
    bool due = false;             // the timer fired while a check was still running
    bool probation = false;       // passive retry window elapsed, no success seen yet
    bool awaiting_first = false;  // Down until its first successful check (new, discovered)
    std::string request;          // the check request, Host included
    std::string reason;
  };

  static void timer_cb(uv_timer_t* t);
  void start_check(Backend& b);
  void check_done(int backend, bool ok, const std::string& reason);
  void passive_down(Backend& b, std::string reason);
  void transition(Backend& b, Health to, std::string reason);

  uv_loop_t* loop_;
  const Config& cfg_;
  ChangeFn on_change_;
  std::string target_;
  std::vector<Backend> backends_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace stickyd
