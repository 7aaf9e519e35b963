// AffinityTable: Engine.IO session id -> backend index.
//
// Entries are refreshed by every request of their session, pinned while a held poll or a
// websocket tunnel of the session is open (a pinned entry never expires and is never evicted:
// this is where HAProxy's stick tables lose long-lived websockets), and otherwise forgotten
// after their idle time. The table is bounded: beyond max_sessions the least recently used
// unpinned entry is evicted. Lookup, refresh, pin and unpin are O(1).
//
// Layout (why it is not a std::unordered_map): a million sessions must fit in well under
// 100 MB and growing the table must never stall the event loop. Each entry is one 64-byte
// slot (a cache line) in a chunked slab (no allocation per entry, nothing ever moves), keys
// of up to 39 bytes (Socket.IO's are 20, UUIDs 36) are stored inline, and the index is an
// open-addressing array of 8-byte (fingerprint, slot) words. The table is split into shards
// by hash: each shard has its own index, slab, LRU list and mutex, so a resize rehashes one
// shard only (1/64th of the table at most) and several event loops (workers) can share one
// table with cheap, rarely contended locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stickyd {

class AffinityTable {
 public:
  struct Stats {
    uint64_t learnt = 0;
    uint64_t expired = 0;
    uint64_t evicted = 0;
  };
  // Backend indexes the per-backend session counters cover (indexes are stable across
  // reloads and only grow; the config refuses more backends than this).
  static constexpr size_t kMaxBackends = 4096;
  // The backend of a session a paced eviction moved off its node: the entry stays until it
  // expires so that the client's next request with this sid is answered "Session ID unknown"
  // (it re-handshakes) instead of being balanced elsewhere as an unknown key. Not counted
  // in any backend's sessions.
  static constexpr uint16_t kEvicted = UINT16_MAX;

  // The shard count is fixed here from max_sessions: small tables get one shard, so
  // eviction order is exact LRU; large ones up to 64, each bounded to its share.
  explicit AffinityTable(size_t max_sessions);
  ~AffinityTable();
  AffinityTable(const AffinityTable&) = delete;
  AffinityTable& operator=(const AffinityTable&) = delete;

  // Records (or re-points) sid -> backend, idle for `idle_ms` from `now_ms`.
  void learn(std::string_view sid, uint16_t backend, int64_t idle_ms, int64_t now_ms);
  // Backend of a live sid, refreshing it; nullopt when unknown or idle-expired.
  std::optional<uint16_t> touch(std::string_view sid, int64_t now_ms);
  // Pins a known sid (returns false when unknown); each pin needs one unpin.
  bool pin(std::string_view sid, int64_t now_ms);
  void unpin(std::string_view sid, int64_t now_ms);
  // Drops a session whose backend told us it is gone.
  void forget(std::string_view sid);
  // Forgets idle entries, oldest first, at most `budget` of them; returns how many.
  size_t expire(int64_t now_ms, size_t budget = 4096);

  size_t size() const { return size_.load(std::memory_order_relaxed); }
  void set_max_sessions(size_t n);
  // Forgets every session of `backend` (removed by a reload).
  size_t forget_backend(uint16_t backend);
  // The sids of `backend`'s sessions: walks every shard under its lock, O(table). Only for
  // eviction (rare), never per request.
  std::vector<std::string> sessions_of_backend(uint16_t backend) const;
  // Re-points sid to kEvicted if it still belongs to `backend` (pins and idle time kept);
  // false when it is unknown or belongs elsewhere (it left on its own).
  bool mark_evicted(std::string_view sid, uint16_t backend);
  // Sessions currently owned by `backend` (for least-connection balancing and the admin API).
  uint32_t sessions_of(uint16_t backend) const {
    return backend < kMaxBackends ? per_backend_[backend].load(std::memory_order_relaxed) : 0;
  }
  size_t pinned() const { return pinned_.load(std::memory_order_relaxed); }
  Stats stats() const {
    return {learnt_.load(std::memory_order_relaxed), expired_.load(std::memory_order_relaxed),
            evicted_.load(std::memory_order_relaxed)};
  }
  size_t shard_count() const { return shards_.size(); }

  // Sessions learnt or forgotten, reported from the worker thread that did it: a process
  // hand-over (handover.hpp) streams them to the other process while both serve.
  class Observer {
   public:
    virtual ~Observer() = default;
    virtual void learnt(std::string_view sid, uint16_t backend, int64_t idle_ms) = 0;
    virtual void forgotten(std::string_view sid) = 0;
  };
  void set_observer(Observer* o) { observer_.store(o, std::memory_order_release); }
  // While one exists on a thread, its learn/forget calls are not reported (applying what the
  // other process reported must not echo back to it).
  class Quiet {
   public:
    Quiet();
    ~Quiet();
    Quiet(const Quiet&) = delete;
    Quiet& operator=(const Quiet&) = delete;
  };
  // Visits every live entry under its shard's lock: sid, backend, ms left before it expires
  // (a pinned entry: its whole idle time), pinned. `fn` must not call back into the table.
  using Visitor = std::function<void(std::string_view sid, uint16_t backend, int64_t ttl_ms,
                                     bool pinned)>;
  void for_each(const Visitor& fn, int64_t now_ms) const;
  // Heap bytes one entry costs at a typical load (slot + index words), for docs and metrics.
  static size_t bytes_per_entry(size_t sid_length);

  class Shard;  // defined in affinity.cpp

 private:
  Shard& shard_for(uint64_t hash) const;

  std::vector<std::unique_ptr<Shard>> shards_;
  unsigned shard_shift_ = 64;  // shard = hash >> shard_shift_ (64: one shard)
  std::atomic<size_t> size_{0};
  std::atomic<size_t> max_sessions_{1};
  std::atomic<size_t> pinned_{0};
  std::atomic<uint64_t> learnt_{0}, expired_{0}, evicted_{0};
  std::unique_ptr<std::atomic<uint32_t>[]> per_backend_;
  size_t next_expire_shard_ = 0;  // expire() round-robins its budget over the shards
  std::mutex expire_mutex_;
  std::atomic<Observer*> observer_{nullptr};
  void report_learnt(std::string_view sid, uint16_t backend, int64_t idle_ms);
  void report_forgotten(std::string_view sid);
};

}  // namespace stickyd
