// Discovery: backends that follow a DNS name (Kubernetes headless Services, compose --scale).
//
// Each `discover` entry is looked up with c-ares on the main loop (no blocking call, no
// thread), at least every resolvers.interval and sooner when an answer's TTL runs out. Every
// answer becomes a set of identities:
//   A/AAAA  "ip:port" ("[ip]:port" for IPv6): one backend per address;
//   SRV     "target:port" (target lowercased, no trailing dot): one backend per target, its
//           address the target's A (else AAAA) record. A StatefulSet pod keeps its name.
// A backend's name, persistence value and metrics label derive from its identity only (never
// from the order of the answers or a slot number), so stickyd replicas that see the same
// records agree without sharing state (values are HMAC-derived from the name: with
// sticky.secret as for static backends, else with a fixed key, since names hold dots, the
// default sid tag separator).
//
// Changes: a new identity becomes a backend; one missing from the answers is drained (no new
// sessions, its sessions and tunnels go on) and removed once it has had no session for
// `hold`, or when it is marked down; an identity that comes back before that is undrained.
// A failed or empty lookup keeps the last good set.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stickyd/config.hpp"

struct ares_channeldata;

namespace stickyd {

// One record a lookup found, resolved to an address.
struct DnsTarget {
  std::string host;  // SRV target (lowercase, no trailing dot); for A/AAAA the address text
  uint16_t port = 0;
  SocketAddress address;
};

std::string discovered_identity(DiscoverType type, const DnsTarget& t);
// The backend name for an identity: [A-Za-z0-9_.-]+ ("10.0.0.5_3000", "fd00--5_3000",
// "io-0.io.app.svc.cluster.local_3000").
std::string discovered_name(const std::string& identity);

// The asynchronous resolver: c-ares driven by the libuv loop (uv_poll per socket, one timer).
class DnsResolver {
 public:
  // status 0 = answered (records may be empty: NODATA/NXDOMAIN give status 0 and nothing);
  // else a c-ares status, with `error` saying it. `ttl_s`: the smallest TTL seen (0 = none).
  using Callback = std::function<void(int status, const std::string& error,
                                      std::vector<DnsTarget> targets, uint32_t ttl_s)>;

  DnsResolver(uv_loop_t* loop, const ResolversConfig& cfg);
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  bool ok() const { return channel_ != nullptr; }
  const std::string& init_error() const { return init_error_; }
  // Looks `name` up; `port` is used for A/AAAA. The callback runs on the loop, never after
  // the resolver is destroyed.
  void lookup(const std::string& name, DiscoverType type, uint16_t port, Callback cb);

 private:
  struct Poll;
  struct Query;
  static void sock_state_cb(void* data, int fd, int readable, int writable);
  static void poll_cb(uv_poll_t* h, int status, int events);
  static void timer_cb(uv_timer_t* t);
  void rearm_timer();
  void read_srv(std::shared_ptr<Query> q, const unsigned char* abuf, int alen);
  void resolve_targets(std::shared_ptr<Query> q);
  struct TargetQuery;
  static void ask_target(TargetQuery* target);

  uv_loop_t* loop_;
  ares_channeldata* channel_ = nullptr;
  std::string init_error_;
  std::map<int, Poll*> polls_;
  uv_timer_t* timer_ = nullptr;          // heap: freed by its close callback
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A discovered backend, as long as stickyd keeps it.
struct DiscoveredMember {
  DnsTarget target;
  std::string identity, name;
  bool present = true;             // in the last good answer
  int64_t missing_since_ms = 0;    // when it left the answers (draining since)
  int64_t idle_since_ms = -1;      // draining with no session since (-1: has sessions)
};

// One `discover` entry's set, and how a good answer changes it. Pure: unit tested.
struct DiscoveredSet {
  std::map<std::string, DiscoveredMember> members;  // by identity: a stable order
  bool answered = false;   // a good answer ever came
  bool failing = false;    // the last lookup failed or was empty (logged once per change)

  struct Change {
    std::vector<std::string> added, drained, undrained, moved;  // names
    bool any() const { return !added.empty() || !drained.empty() || !undrained.empty() || !moved.empty(); }
  };
  // A good, non-empty answer. At most `max` identities are kept (the first by identity, so
  // every replica keeps the same ones); members already kept are never displaced.
  Change apply(const DiscoverConfig& d, const std::vector<DnsTarget>& targets, int64_t now_ms);
};

class Discovery {
 public:
  // `changed` runs (on the loop) whenever the set of backends or their addresses changed.
  Discovery(uv_loop_t* loop, std::function<void()> changed);
  ~Discovery();

  // Starts (or, after a reload, restarts) following cfg.discover with cfg.resolvers. Sets of
  // entries that are still configured (same name, type and port) are kept.
  void configure(const Config& cfg);
  void stop();

  // The discovered backends to run with, for `cfg` (its discover entries, weights, TLS, and
  // persistence values as the config loader derives them for static ones).
  std::vector<BackendConfig> backends(const Config& cfg) const;
  // Draining members whose time is up: `removable(name)` says whether the backend has no
  // session, tunnel or request left (`down` whether health marked it down). Returns true
  // when some were removed (then call backends() again and apply it).
  bool expire(int64_t now_ms, const std::function<bool(const std::string&)>& idle,
              const std::function<bool(const std::string&)>& down);
  bool draining(const std::string& name) const;
  size_t lookups() const { return lookups_; }

 private:
  struct Entry {
    DiscoverConfig config;
    DiscoveredSet set;
    uv_timer_t* timer = nullptr;  // heap: freed by its close callback
    Discovery* owner = nullptr;
    bool in_flight = false;
  };
  void schedule(Entry& e, Millis after);
  void run(Entry& e);
  static void entry_timer_cb(uv_timer_t* t);

  uv_loop_t* loop_;
  std::function<void()> changed_;
  ResolversConfig resolvers_;
  std::unique_ptr<DnsResolver> resolver_;
  std::vector<std::shared_ptr<Entry>> entries_;  // shared: lookups in flight hold weak refs
  size_t lookups_ = 0;
};

}  // namespace stickyd
