// Metrics: plain counters the data path bumps, rendered on demand as Prometheus text
// exposition format 0.0.4.
//
// Single-threaded, owned by the proxy, updated from the loop thread only. Every hot-path
// update is an array index plus an add: no allocation, no string lookup. Backends are
// addressed by their index in Config::backends (an out-of-range index, e.g. -1 for "not
// routed", only updates the global counters).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stickyd {

// A paced eviction of a backend (POST /backends/<name>/evict), running or finished.
struct EvictionStatus {
  int64_t over_ms = 0;     // the window
  int64_t elapsed_ms = 0;  // since it started
  uint64_t total = 0;      // sessions it had at the start
  uint64_t evicted = 0;    // moved off by the eviction
  uint64_t gone = 0;       // left on their own meanwhile
  bool done = false;
  bool cancelled = false;  // `ready` was set before the end
};

// A backend as the admin API and the metrics page show it (see AdminModel::backends()).
struct BackendStatus {
  std::string name;
  std::string address;
  std::string state;   // ready | drain | maint
  std::string health;  // up | down | unchecked
  uint32_t weight = 0;
  uint32_t effective_weight = 0;  // after health, slow start and admin state
  uint64_t sessions = 0;          // affinity entries pointing at it
  uint64_t connections = 0;       // open connections to it
  uint64_t tunnels = 0;           // open websocket tunnels to it
  uint64_t requests = 0;          // requests routed to it since start
  // Discovered backends: the DNS name that found it, its identity, and whether the last
  // answer still had it (false: draining until removed). Empty for static backends.
  std::string discovered_by;
  std::string identity;
  bool in_dns = true;
  bool has_eviction = false;  // an eviction ran or runs: `eviction` is meaningful
  EvictionStatus eviction;
};

// Counters of one backend. Plain fields: `metrics.backend(i).bytes_to_client += n` is fine.
struct BackendCounters {
  static constexpr size_t kClasses = 5;  // 1xx .. 5xx
  std::array<uint64_t, kClasses> responses{};  // responses relayed from the backend, by class
  uint64_t local_errors = 0;      // answered by stickyd itself for a request routed here (502/504...)
  uint64_t bytes_to_client = 0;   // response bytes relayed to clients (tunnel bytes included)
  uint64_t bytes_to_backend = 0;  // request bytes relayed to the backend (tunnel bytes included)
  uint64_t handshakes = 0;        // Engine.IO handshakes balanced here
  int64_t tunnels_open = 0;       // gauge
  uint64_t tunnels_total = 0;
  uint64_t connections = 0;       // TCP connections to the backend started
  uint64_t connect_errors = 0;    // ... of which failed to connect
  uint64_t health_up = 0;         // health transitions down -> up
  uint64_t health_down = 0;       // health transitions up -> down
};

class Metrics {
 public:
  // Request latency histogram upper bounds in seconds; a +Inf bucket follows.
  static constexpr std::array<double, 14> kLatencyBounds = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  static constexpr size_t kLatencyBuckets = kLatencyBounds.size() + 1;
  // Status codes stickyd answers by itself; anything else is counted as code="other".
  static constexpr std::array<int, 9> kLocalCodes = {400, 405, 408, 413, 414, 431, 502, 503, 504};

  // `names[i]` labels backend i; missing names render as the index.
  explicit Metrics(size_t backends = 0, std::span<const std::string> names = {});

  // Config reload: n backends named `names`. Counters follow their backend by name (a
  // renamed or new backend starts at zero, a removed one is dropped); without names they
  // stay by index.
  void resize(size_t n, std::span<const std::string> names = {});
  // Adds another worker's counters and gauges (same backends by index; extra ones ignored).
  void add(const Metrics& other);

  size_t backend_count() const { return backends_.size(); }
  const std::string& backend_name(size_t i) const { return names_[i]; }
  BackendCounters& backend(size_t i) { return backends_[i]; }  // unchecked
  const BackendCounters& backend(size_t i) const { return backends_[i]; }

  // ---- hot path

  // A response from backend `b` was relayed to the client.
  void response(int b, int status) {
    if (BackendCounters* c = at(b)) {
      unsigned cls = static_cast<unsigned>(status / 100) - 1u;
      if (cls < BackendCounters::kClasses) ++c->responses[cls];
    }
  }
  // stickyd answered `status` itself; `b` is the backend the request was routed to, or -1.
  void local_response(int b, int status) {
    ++local_[local_index(status)];
    if (BackendCounters* c = at(b)) ++c->local_errors;
  }
  void bytes_to_client(int b, uint64_t n) {
    if (BackendCounters* c = at(b)) c->bytes_to_client += n;
  }
  void bytes_to_backend(int b, uint64_t n) {
    if (BackendCounters* c = at(b)) c->bytes_to_backend += n;
  }
  // A handshake request (global), balanced to `b` (or -1 when it could not be routed).
  void handshake(int b) {
    ++handshakes_;
    if (BackendCounters* c = at(b)) ++c->handshakes;
  }
  void tunnel_opened(int b) {
    if (BackendCounters* c = at(b)) {
      ++c->tunnels_open;
      ++c->tunnels_total;
    }
  }
  void tunnel_closed(int b) {
    if (BackendCounters* c = at(b)) --c->tunnels_open;
  }
  // A TCP connection to `b` was started (pool misses); connect_failed when it then failed.
  void backend_connection(int b) {
    if (BackendCounters* c = at(b)) ++c->connections;
  }
  void backend_connect_failed(int b) {
    if (BackendCounters* c = at(b)) ++c->connect_errors;
  }
  void health_transition(int b, bool up) {
    if (BackendCounters* c = at(b)) ++(up ? c->health_up : c->health_down);
  }
  void client_opened() {
    ++clients_open_;
    ++clients_total_;
  }
  void client_closed() { --clients_open_; }
  // O(#buckets), no allocation. Negative values count as 0; NaN and infinities are ignored.
  void observe_latency(double seconds);

  // ---- gauges set from elsewhere (e.g. from AffinityTable::stats() before rendering)
  void set_affinity(uint64_t size, uint64_t learnt, uint64_t expired, uint64_t evicted,
                    uint64_t pinned = 0) {
    affinity_size_ = size;
    sids_learnt_ = learnt;
    sids_expired_ = expired;
    sids_evicted_ = evicted;
    affinity_pinned_ = pinned;
  }

  // ---- reading (tests, admin)
  uint64_t local_responses(int status) const { return local_[local_index(status)]; }
  uint64_t handshakes() const { return handshakes_; }
  int64_t clients_open() const { return clients_open_; }
  uint64_t clients_total() const { return clients_total_; }
  uint64_t latency_count() const { return latency_count_; }
  double latency_sum() const { return latency_sum_; }
  uint64_t latency_bucket(size_t i) const { return latency_[i]; }  // not cumulative

  // Appends the exposition text. `status` (may be empty) adds per-backend state, health,
  // weight and session gauges, labelled with status[i].name; the counters are labelled with
  // this object's names.
  void render_prometheus(std::string& out, std::span<const BackendStatus> status = {}) const;

  static size_t local_index(int status) {
    switch (status) {
      case 400: return 0;
      case 405: return 1;
      case 408: return 2;
      case 413: return 3;
      case 414: return 4;
      case 431: return 5;
      case 502: return 6;
      case 503: return 7;
      case 504: return 8;
      default: return kLocalCodes.size();  // "other"
    }
  }

 private:
  BackendCounters* at(int b) {
    return static_cast<size_t>(b) < backends_.size() ? &backends_[static_cast<size_t>(b)]
                                                    : nullptr;
  }

  std::vector<BackendCounters> backends_;
  std::vector<std::string> names_;
  std::array<uint64_t, kLocalCodes.size() + 1> local_{};
  uint64_t handshakes_ = 0;
  uint64_t sids_learnt_ = 0;
  uint64_t sids_expired_ = 0;
  uint64_t sids_evicted_ = 0;
  uint64_t affinity_size_ = 0;
  uint64_t affinity_pinned_ = 0;
  int64_t clients_open_ = 0;
  uint64_t clients_total_ = 0;
  std::array<uint64_t, kLatencyBuckets> latency_{};
  double latency_sum_ = 0;
  uint64_t latency_count_ = 0;
};

// Prometheus label value escaping: backslash, double quote and newline.
void append_label_value(std::string& out, std::string_view v);

}  // namespace stickyd
