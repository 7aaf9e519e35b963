// Admin HTTP API: backend state and weight, the metrics page, liveness.
//
//   GET  /health                  200 {"status":"ok"}
//   GET  /metrics                 Prometheus text (AdminModel::metrics_text)
//   GET  /backends                {"backends":[{...}, ...]}
//   GET  /backends/<name>         {...} | 404
//   PUT  /backends/<name>/state   body `ready|drain|maint` or {"state":"drain"} -> 200 {...}
//   PUT  /backends/<name>/weight  body `N` (0..1000000) or {"weight":N}        -> 200 {...}
//   POST /backends/<name>/evict?over=30s  drain now, then move its sessions off evenly over
//                                 the window (default 30s, up to 1d) -> 200 {...} | 400 | 404
//   (POST is accepted for the two PUTs; HEAD for every GET.)
//
// HTTP/1.1 with keep-alive and pipelining, request bodies up to 4 KiB (413 beyond), heads up
// to 16 KiB (431/414 beyond). Errors are JSON: {"error":"..."}. With AdminConfig::token set,
// every request (including /health) needs `Authorization: Bearer <token>`, else 401.
// Malformed requests get 400 and the connection is closed.
//
// Slow and idle clients: a connection counts as authenticated once one of its requests
// carried the valid token (never without a token). An unauthenticated connection must
// deliver each request whole within AdminConfig::request_timeout (5 s), counted from the
// accept or from the previous answer, so trickled bytes do not extend it: else 408 (a
// request begun) or a silent close (nothing sent), and a log line for the 408. An
// authenticated connection may stay idle for 30 s. At most AdminConfig::max_connections_per_ip
// (8) connections from one client address: more are closed on accept (logged at most once a
// second). At most kMaxConnections at once: when all are taken, the oldest connection that
// never authenticated is closed to make room (so many addresses cannot lock the operator
// out either); only when every connection authenticated is a newcomer refused.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "stickyd/config.hpp"
#include "stickyd/metrics.hpp"  // BackendStatus

namespace stickyd {

class Listener;

// ready: normal; drain: no new sessions, existing sessions and tunnels continue;
// maint: no traffic at all.
enum class AdminState { Ready, Drain, Maint };

const char* to_string(AdminState s);                            // "ready" | "drain" | "maint"
std::optional<AdminState> parse_admin_state(std::string_view s);  // exact lowercase names

// Implemented by the proxy. Called on the loop thread, from inside the admin server's read
// callbacks; it must not destroy the AdminServer from these calls.
class AdminModel {
 public:
  virtual ~AdminModel() = default;
  virtual std::vector<BackendStatus> backends() = 0;
  virtual bool set_state(std::string_view backend, AdminState s) = 0;  // false = unknown backend
  virtual bool set_weight(std::string_view backend, uint32_t w) = 0;   // false = unknown backend
  virtual void metrics_text(std::string& out) = 0;                     // Prometheus text
  // Drain `backend` and close its sessions evenly over `over`; false = unknown backend.
  virtual bool evict(std::string_view backend, Millis over) = 0;
};

// The `over` of an evict request's query (e.g. "over=30s&x=1"): the default when absent,
// nullopt when it is not a duration (config syntax) between 0 and kMaxEvictOver.
constexpr Millis kDefaultEvictOver{30000};
constexpr Millis kMaxEvictOver{24 * 3600 * 1000};
std::optional<Millis> parse_evict_over(std::string_view query);

class AdminServer {
 public:
  static constexpr uint32_t kMaxWeight = 1000000;
  static constexpr size_t kMaxBody = 4096;
  static constexpr size_t kMaxHead = 16 * 1024;
  static constexpr size_t kMaxConnections = AdminConfig::kMaxConnections;

  // `cfg` is copied; `model` must outlive this object.
  AdminServer(uv_loop_t* loop, const AdminConfig& cfg, AdminModel& model);
  ~AdminServer();  // stop(); connections still closing free themselves later
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // 0 or a libuv error (logged). Logs "admin listening address=127.0.0.1:PORT".
  // `inherited_fd` >= 0: listen on that socket (an upgrade passed it) instead of binding.
  int start(int inherited_fd = -1);
  int listener_fd() const;  // -1 when not listening
  // Closes the listener only (the connections finish): the process that took over serves
  // the admin API from now on.
  void stop_listening();
  std::string bound_address() const;  // "" before start()
  // Closes the listener and every connection (idempotent). The handles are released on
  // the next loop iterations.
  void stop();

  size_t connections() const { return conns_.size(); }
  size_t connections_from(const std::string& ip) const;  // admitted, not closing yet
  void set_idle_timeout(Millis t) { idle_timeout_ = t; }  // default 30 s

 private:
  class Conn;
  friend class Conn;

  void on_connection(uv_stream_t* server);
  void refuse(Conn* c, const char* reason, const std::string& ip);
  bool evict_oldest_unauthenticated();  // false when every connection authenticated
  void release(const std::string& ip);  // an admitted connection of `ip` is closing
  void destroy(Conn* c);

  uv_loop_t* loop_;
  AdminConfig cfg_;
  AdminModel& model_;
  std::array<unsigned char, 32> token_digest_{};  // SHA-256("Bearer-token"), when set
  std::unique_ptr<Listener> listener_;
  std::unordered_map<Conn*, std::unique_ptr<Conn>> conns_;
  std::unordered_map<std::string, uint32_t> per_ip_;  // admitted connections by address
  Millis idle_timeout_{AdminConfig::kIdleTimeout};
  size_t admitted_ = 0;                      // the sum of per_ip_
  uint64_t refused_ = 0;                     // connections closed on accept, for the log
  uint64_t evicted_ = 0;                     // unauthenticated ones closed to make room
  uint64_t accepted_ = 0;                    // admitted so far: orders connections by age
  int64_t last_refusal_log_ms_ = -1000000;  // loop time of the last refusal line
  int64_t last_eviction_log_ms_ = -1000000;
  bool stopped_ = false;
};

}  // namespace stickyd
