// Router: decides, for each request on its own, which backend gets it.
//
//   1. `sid` query parameter (Engine.IO path only): a tag naming a backend, else the table
//   2. HAProxy-style server cookie (insert/rewrite: its own cookie; prefix: "<value>~<rest>")
//   3. session cookie (`io`): a tag, else the table
//   4. nothing known (a handshake, or an unknown key): the balancing policy
// The session's backend down or in maintenance: redispatch (Engine.IO requests with a sid are
// answered `400 {"code":1,...}` at once so the client re-handshakes), or 503 when strict.
// A sid evicted from its node (AffinityTable::kEvicted) gets the same 400; an evicted
// session cookie is balanced like an unknown key.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stickyd/admin.hpp"
#include "stickyd/affinity.hpp"
#include "stickyd/balancer.hpp"
#include "stickyd/config.hpp"
#include "stickyd/engineio.hpp"
#include "stickyd/health.hpp"
#include "stickyd/persistence.hpp"

namespace stickyd {

struct BackendState {
  BackendConfig config;
  AdminState admin = AdminState::Ready;
  Health health = Health::Unchecked;
  uint32_t weight = 1;      // current weight (config, or set through the admin API)
  int64_t up_since_ms = 0;  // when it last came up, for slow start
  uint64_t requests = 0;
  uint32_t in_flight = 0;   // requests being proxied
  uint32_t tunnels = 0;     // open websocket tunnels
  uint32_t connections = 0; // open connections to it (pooled ones included)
  uint32_t connecting = 0;  // connects in progress
  // Down by its checks but still answering, while a paced eviction moves its sessions off:
  // the sessions not yet evicted are still routed to it (no new ones are).
  bool paced_down = false;
};

enum class KeySource : uint8_t { None, Query, Cookie, ServerCookie };
enum class RouteVia : uint8_t { None, Table, Tag, ServerCookie, Balance, UnknownKey, Redispatch, Hint };

const char* to_string(KeySource s);
const char* to_string(RouteVia v);

struct Route {
  int backend = -1;         // -1: see `local_status`
  int local_status = 0;     // answered by the proxy: 503 (none usable / strict), 400 (EIO code 1)
  std::string key;          // the session id the backend knows (tag removed); empty when none
  KeySource source = KeySource::None;
  RouteVia via = RouteVia::None;  // None: answered before any routing (bad request)
  bool engineio = false;    // under the configured Engine.IO path
  bool handshake = false;   // Engine.IO request without sid: its response carries a new sid
  bool evicted = false;     // the key names a session a paced eviction moved off its node
  bool strip_tag = false;   // forward the sid and session cookie without the proxy's tag
  bool strip_prefix = false;        // prefix mode: forward the cookie without "<value>~"
  bool strip_server_cookie = false; // insert+indirect: forward without the server cookie
  bool strip_hint = false;  // forward without the sticky.reconnect_hint query parameter
  bool server_cookie_ok = false;    // the client holds a valid server cookie for `backend`
  bool refresh_server_cookie = false;
  int64_t server_cookie_first_seen = 0;
};

class Router {
 public:
  explicit Router(const Config& cfg);  // with a table of its own
  // Sharing `table` (which must outlive the router) with the routers of other workers.
  Router(const Config& cfg, AffinityTable& table);
  // Picks new sessions with `shared` (under its lock) instead of a balancer of its own.
  void share_balancer(SharedBalancer& shared);

  // `cookie_header`: the request's Cookie header(s), joined with "; ", or empty.
  // `client_hash`: hash of the client address (for the `hash` policy).
  Route route(std::string_view target, std::string_view cookie_header, uint64_t client_hash,
              int64_t now_ms);
  // The same into `r`, reusing its key's buffer (the proxy keeps one Route per connection).
  void route_into(Route& r, std::string_view target, std::string_view cookie_header,
                  uint64_t client_hash, int64_t now_ms);

  // A handshake answered by `backend` created `sid`; `open` is its open packet when read.
  void learn(std::string_view sid, int backend, const OpenPacket* open, int64_t now_ms);
  bool pin(const Route& r, int64_t now_ms);  // false when the key is not in the table
  void unpin(const Route& r, int64_t now_ms);

  void set_health(int backend, Health h, int64_t now_ms);
  bool set_admin_state(int backend, AdminState s);
  bool set_weight(int backend, uint32_t w);
  int find_backend(std::string_view name) const;
  uint32_t effective_weight(int backend, int64_t now_ms) const;  // slow start applied

  // The config this router reads changed in place (reload): backends keep their indexes
  // (see Server::reload), new ones are appended, removed ones get no traffic.
  void reconfigure();

  AffinityTable& table() { return table_; }
  const Persistence& persistence() const { return persistence_; }
  std::vector<BackendState>& backends() { return backends_; }
  const std::vector<BackendState>& backends() const { return backends_; }
  const BackendState& backend(int i) const { return backends_[static_cast<size_t>(i)]; }
  BackendState& backend(int i) { return backends_[static_cast<size_t>(i)]; }
  const Config& config() const { return cfg_; }

  // A node for a new session other than `exclude` (its connect just failed), or -1.
  int balance_excluding(int exclude, uint64_t client_hash, int64_t now_ms) {
    return balance(client_hash, now_ms, exclude);
  }

 private:
  Router(const Config& cfg, AffinityTable* shared_table);
  int balance(uint64_t client_hash, int64_t now_ms, int exclude = -1);
  bool serves_sessions(int b) const;  // existing sessions may still go there
  void route_hint(Route& r, std::string_view query, int64_t now_ms);
  void route_sid(Route& r, std::string_view sid, KeySource source, int64_t now_ms);

  const Config& cfg_;
  std::vector<BackendState> backends_;
  std::vector<BalanceCandidate> candidates_;  // reused per pick: no allocation per request
  std::unique_ptr<Balancer> balancer_;        // null once share_balancer() was called
  SharedBalancer* shared_balancer_ = nullptr;
  uint64_t reloads_ = 0;
  Persistence persistence_;
  std::unique_ptr<AffinityTable> own_table_;
  AffinityTable& table_;
};

}  // namespace stickyd
