// Router: decides, for each request on its own, which backend gets it.
//
//   key = `sid` query parameter (Engine.IO path only), else the session cookie (any path)
//   key known in the AffinityTable            -> that backend               (via=table)
//   no key (handshake) or a key not known     -> the balancing policy       (via=balance)
// Handshake responses teach the table new sids (learn()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stickyd/affinity.hpp"
#include "stickyd/balancer.hpp"
#include "stickyd/config.hpp"
#include "stickyd/engineio.hpp"

namespace stickyd {

struct BackendState {
  BackendConfig config;
  int64_t down_until_ms = 0;  // passive: skipped by the balancer after a connect failure
  uint32_t consecutive_failures = 0;
  uint64_t requests = 0;
};

enum class KeySource : uint8_t { None, Query, Cookie };
enum class RouteVia : uint8_t { Table, Balance, UnknownKey };

const char* to_string(KeySource s);
const char* to_string(RouteVia v);

struct Route {
  int backend = -1;  // -1: no backend usable (503)
  std::string key;   // the session id used as key; empty when none
  KeySource source = KeySource::None;
  RouteVia via = RouteVia::Balance;
  bool engineio = false;   // under the configured Engine.IO path
  bool handshake = false;  // Engine.IO request without sid: its response carries a new sid
};

class Router {
 public:
  explicit Router(const Config& cfg);

  // `cookie_header`: the request's Cookie header(s), joined with "; ", or empty.
  Route route(std::string_view target, std::string_view cookie_header, int64_t now_ms);

  // A handshake answered by `backend` created `sid`; `open` is its open packet when read.
  void learn(std::string_view sid, int backend, const OpenPacket* open, int64_t now_ms);
  void pin(const Route& r, int64_t now_ms);
  void unpin(const Route& r, int64_t now_ms);

  void connect_failed(int backend, int64_t now_ms);
  void connect_succeeded(int backend);

  AffinityTable& table() { return table_; }
  const std::vector<BackendState>& backends() const { return backends_; }
  const BackendState& backend(int i) const { return backends_[static_cast<size_t>(i)]; }
  const Config& config() const { return cfg_; }

 private:
  int balance(int64_t now_ms);

  const Config& cfg_;
  std::vector<BackendState> backends_;
  std::vector<BalanceCandidate> candidates_;  // reused per pick: no allocation per request
  std::unique_ptr<Balancer> balancer_;
  AffinityTable table_;
};

}  // namespace stickyd
