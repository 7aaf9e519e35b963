// AffinityTable: Engine.IO session id -> backend index.
//
// Entries are refreshed by every request of their session, pinned while a held poll or a
// websocket tunnel of the session is open (a pinned entry never expires and is never evicted:
// this is where HAProxy's stick tables lose long-lived websockets), and otherwise forgotten
// after their idle time. The table is bounded: beyond max_sessions the least recently used
// unpinned entry is evicted. Lookup, refresh, pin and unpin are O(1).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stickyd {

class AffinityTable {
 public:
  struct Stats {
    uint64_t learnt = 0;
    uint64_t expired = 0;
    uint64_t evicted = 0;
  };

  explicit AffinityTable(size_t max_sessions) : max_sessions_(max_sessions ? max_sessions : 1) {}
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

  size_t size() const { return map_.size(); }
  void set_max_sessions(size_t n) { max_sessions_ = n ? n : 1; }
  // Forgets every session of `backend` (removed by a reload).
  size_t forget_backend(uint16_t backend);
  // Sessions currently owned by `backend` (for least-connection balancing and the admin API).
  uint32_t sessions_of(uint16_t backend) const {
    return backend < per_backend_.size() ? per_backend_[backend] : 0;
  }
  size_t pinned() const { return pinned_; }
  const Stats& stats() const { return stats_; }
  // Approximate heap bytes one entry costs (node, key, bucket), for docs and metrics.
  static size_t bytes_per_entry(size_t sid_length);

 private:
  struct Entry {
    Entry* prev = nullptr;  // LRU list: head = most recent. Pinned entries are not listed.
    Entry* next = nullptr;
    const std::string* key = nullptr;
    int64_t expires_at = 0;
    uint32_t idle_ms = 0;
    uint16_t backend = 0;
    uint16_t pins = 0;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, Entry, Hash, std::equal_to<>>;

  void link_front(Entry* e);
  void unlink(Entry* e);
  void erase(Map::iterator it);
  void count(uint16_t backend, int delta);

  Map map_;
  Entry* head_ = nullptr;
  Entry* tail_ = nullptr;
  size_t max_sessions_;
  size_t pinned_ = 0;
  std::vector<uint32_t> per_backend_;
  Stats stats_;
};

}  // namespace stickyd
