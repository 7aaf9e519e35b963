#include "stickyd/affinity.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

namespace stickyd {

namespace {

constexpr uint32_t kNil = UINT32_MAX;
constexpr size_t kInlineKey = 39;  // Socket.IO's 20, UUIDs (custom generateId) 36
constexpr uint8_t kLongKey = 0xff;  // Slot::len marking a key kept in Shard::long_keys
constexpr unsigned kChunkBits = 10;  // 1024 slots (64 KiB) per slab chunk
constexpr uint32_t kChunkSlots = 1u << kChunkBits;
constexpr size_t kMinIndex = 16;
constexpr size_t kMaxShards = 64;
constexpr size_t kSessionsPerShard = 16384;  // a shard's resize moves at most ~this many words

// One session in one 64-byte cache line: the LRU links are slot indexes, not pointers, and
// the key is inline.
struct alignas(64) Slot {
  uint32_t prev;  // LRU list: head = most recent. Pinned entries are not listed.
  uint32_t next;  // also the free-list link of a free slot
  int64_t expires_at;
  uint32_t idle_ms;
  uint16_t backend;
  uint16_t pins;
  uint8_t len;  // 0: free slot; 1..39: inline key length; kLongKey: see long_keys
  char key[kInlineKey];
};
static_assert(sizeof(Slot) == 64, "keep a slot at one cache line");

uint64_t hash_of(std::string_view s) { return std::hash<std::string_view>{}(s); }

// The index word: the low 32 bits of the hash (home position and fingerprint) and slot + 1.
uint64_t word(uint32_t h, uint32_t slot) { return (uint64_t{h} << 32) | (uint64_t{slot} + 1); }
uint32_t word_hash(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
uint32_t word_slot(uint64_t w) { return static_cast<uint32_t>(w) - 1; }

}  // namespace

class AffinityTable::Shard {
 public:
  explicit Shard(AffinityTable& owner) : t_(owner) {}

  std::mutex mu;

  void learn(uint64_t h64, std::string_view sid, uint16_t backend, int64_t idle_ms,
             int64_t now_ms) {
    uint32_t h = static_cast<uint32_t>(h64);
    size_t pos = find(h, sid);
    uint32_t s;
    if (pos == SIZE_MAX) {
      // Make room first: evict this shard's least recently used unpinned entries. Shards
      // are filled evenly by the hash, so this is the table's LRU to a close approximation
      // (and exactly it when the table has one shard).
      while (t_.size_.load(std::memory_order_relaxed) >=
                 t_.max_sessions_.load(std::memory_order_relaxed) &&
             lru_tail_ != kNil) {
        erase_slot(lru_tail_);
        t_.evicted_.fetch_add(1, std::memory_order_relaxed);
      }
      s = alloc_slot(sid);
      insert_word(word(h, s));
      Slot& e = at(s);
      e.backend = backend;
      e.pins = 0;
      count(backend, +1);
      link_front(s);
      t_.size_.fetch_add(1, std::memory_order_relaxed);
      t_.learnt_.fetch_add(1, std::memory_order_relaxed);
    } else {
      s = word_slot(index_[pos]);
      Slot& e = at(s);
      if (e.pins == 0) {
        unlink(s);
        link_front(s);
      }
      count(e.backend, -1);
      count(backend, +1);
      e.backend = backend;
    }
    Slot& e = at(s);
    e.idle_ms = static_cast<uint32_t>(std::clamp<int64_t>(idle_ms, 1, UINT32_MAX));
    e.expires_at = now_ms + e.idle_ms;
  }

  std::optional<uint16_t> touch(uint64_t h64, std::string_view sid, int64_t now_ms) {
    size_t pos = find(static_cast<uint32_t>(h64), sid);
    if (pos == SIZE_MAX) return std::nullopt;
    uint32_t s = word_slot(index_[pos]);
    Slot& e = at(s);
    if (e.pins == 0) {
      if (e.expires_at <= now_ms) {
        erase_slot(s);
        t_.expired_.fetch_add(1, std::memory_order_relaxed);
        return std::nullopt;
      }
      unlink(s);
      link_front(s);
    }
    e.expires_at = now_ms + e.idle_ms;
    return e.backend;
  }

  bool pin(uint64_t h64, std::string_view sid, int64_t now_ms) {
    size_t pos = find(static_cast<uint32_t>(h64), sid);
    if (pos == SIZE_MAX) return false;
    uint32_t s = word_slot(index_[pos]);
    Slot& e = at(s);
    if (e.pins == 0) {
      unlink(s);
      t_.pinned_.fetch_add(1, std::memory_order_relaxed);
    }
    if (e.pins < UINT16_MAX) ++e.pins;
    e.expires_at = now_ms + e.idle_ms;
    return true;
  }

  void unpin(uint64_t h64, std::string_view sid, int64_t now_ms) {
    size_t pos = find(static_cast<uint32_t>(h64), sid);
    if (pos == SIZE_MAX) return;
    uint32_t s = word_slot(index_[pos]);
    Slot& e = at(s);
    if (e.pins == 0) return;
    if (--e.pins == 0) {
      t_.pinned_.fetch_sub(1, std::memory_order_relaxed);
      link_front(s);
    }
    e.expires_at = now_ms + e.idle_ms;  // idle time counts from the end of the poll/tunnel
  }

  void forget(uint64_t h64, std::string_view sid) {
    size_t pos = find(static_cast<uint32_t>(h64), sid);
    if (pos != SIZE_MAX) erase_slot(word_slot(index_[pos]));
  }

  size_t expire(int64_t now_ms, size_t budget) {
    // The LRU tail is the least recently refreshed entry. Idle times may differ per session,
    // so an entry that is not yet due can hide a due one behind it; touch() checks lazily too.
    size_t n = 0;
    while (lru_tail_ != kNil && n < budget && at(lru_tail_).expires_at <= now_ms) {
      erase_slot(lru_tail_);
      ++n;
    }
    // Give index memory back after a peak (the slab keeps its chunks for the next one).
    if (index_.size() > kMinIndex && count_ * 8 < index_.size()) rehash(index_.size() / 2);
    return n;
  }

  void for_each(const AffinityTable::Visitor& fn, int64_t now_ms) {
    for (uint32_t s = 0; s < slots_used_; ++s) {
      Slot& e = at(s);
      if (e.len == 0) continue;
      bool pinned = e.pins > 0;
      int64_t ttl = pinned ? e.idle_ms : e.expires_at - now_ms;
      if (ttl > 0) fn(key_of(s), e.backend, ttl, pinned);
    }
  }

  bool mark_evicted(uint64_t h64, std::string_view sid, uint16_t backend) {
    size_t pos = find(static_cast<uint32_t>(h64), sid);
    if (pos == SIZE_MAX) return false;
    Slot& e = at(word_slot(index_[pos]));
    if (e.backend != backend) return false;
    count(backend, -1);
    e.backend = kEvicted;
    return true;
  }

  size_t forget_backend(uint16_t backend) {
    size_t n = 0;
    for (uint32_t s = 0; s < slots_used_; ++s) {
      Slot& e = at(s);
      if (e.len != 0 && e.backend == backend) {
        erase_slot(s);
        ++n;
      }
    }
    return n;
  }

 private:
  Slot& at(uint32_t s) { return chunks_[s >> kChunkBits][s & (kChunkSlots - 1)]; }

  std::string_view key_of(uint32_t s) {
    Slot& e = at(s);
    if (e.len == kLongKey) {
      uint32_t k;
      std::memcpy(&k, e.key, sizeof k);
      return long_keys_[k];
    }
    return {e.key, e.len};
  }

  // Index position of sid, or SIZE_MAX.
  size_t find(uint32_t h, std::string_view sid) {
    if (index_.empty()) return SIZE_MAX;
    size_t mask = index_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint64_t w = index_[i];
      if (w == 0) return SIZE_MAX;
      if (word_hash(w) == h && key_of(word_slot(w)) == sid) return i;
    }
  }

  void insert_word(uint64_t w) {
    if ((count_ + 1) * 4 > index_.size() * 3) rehash(std::max(kMinIndex, index_.size() * 2));
    place(w);
    ++count_;
  }

  void place(uint64_t w) {
    size_t mask = index_.size() - 1;
    size_t i = word_hash(w) & mask;
    while (index_[i] != 0) i = (i + 1) & mask;
    index_[i] = w;
  }

  void rehash(size_t capacity) {
    std::vector<uint64_t> old(capacity, 0);
    old.swap(index_);
    for (uint64_t w : old)
      if (w != 0) place(w);
  }

  // Linear-probing deletion by backward shift: no tombstones, probe chains stay short.
  void remove_at(size_t i) {
    size_t mask = index_.size() - 1;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
      uint64_t w = index_[j];
      if (w == 0) break;
      size_t home = word_hash(w) & mask;
      // w may move back to i when its home is not in the cyclic range (i, j].
      bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!in_range) {
        index_[i] = w;
        i = j;
      }
    }
    index_[i] = 0;
    --count_;
  }

  uint32_t alloc_slot(std::string_view sid) {
    uint32_t s;
    if (free_head_ != kNil) {
      s = free_head_;
      free_head_ = at(s).next;
    } else {
      if ((slots_used_ & (kChunkSlots - 1)) == 0)
        chunks_.push_back(std::make_unique<Slot[]>(kChunkSlots));
      s = slots_used_++;
    }
    Slot& e = at(s);
    if (sid.size() <= kInlineKey) {
      e.len = static_cast<uint8_t>(sid.size());
      std::memcpy(e.key, sid.data(), sid.size());
    } else {
      uint32_t k;
      if (!long_free_.empty()) {
        k = long_free_.back();
        long_free_.pop_back();
        long_keys_[k].assign(sid);
      } else {
        k = static_cast<uint32_t>(long_keys_.size());
        long_keys_.emplace_back(sid);
      }
      e.len = kLongKey;
      std::memcpy(e.key, &k, sizeof k);
    }
    return s;
  }

  void erase_slot(uint32_t s) {
    std::string_view key = key_of(s);
    uint32_t h = static_cast<uint32_t>(hash_of(key));
    size_t mask = index_.size() - 1;
    size_t i = h & mask;
    while (word_slot(index_[i]) != s) i = (i + 1) & mask;  // the slot is indexed: always found
    remove_at(i);
    Slot& e = at(s);
    count(e.backend, -1);
    if (e.pins == 0) unlink(s);
    else t_.pinned_.fetch_sub(1, std::memory_order_relaxed);
    if (e.len == kLongKey) {
      uint32_t k;
      std::memcpy(&k, e.key, sizeof k);
      long_keys_[k].clear();
      long_keys_[k].shrink_to_fit();
      long_free_.push_back(k);
    }
    e.len = 0;
    e.next = free_head_;
    free_head_ = s;
    t_.size_.fetch_sub(1, std::memory_order_relaxed);
  }

  void link_front(uint32_t s) {
    Slot& e = at(s);
    e.prev = kNil;
    e.next = lru_head_;
    if (lru_head_ != kNil) at(lru_head_).prev = s;
    lru_head_ = s;
    if (lru_tail_ == kNil) lru_tail_ = s;
  }

  void unlink(uint32_t s) {
    Slot& e = at(s);
    if (e.prev != kNil) at(e.prev).next = e.next; else lru_head_ = e.next;
    if (e.next != kNil) at(e.next).prev = e.prev; else lru_tail_ = e.prev;
    e.prev = e.next = kNil;
  }

  void count(uint16_t backend, int delta) {
    if (backend >= kMaxBackends) return;
    if (delta > 0) t_.per_backend_[backend].fetch_add(1, std::memory_order_relaxed);
    else t_.per_backend_[backend].fetch_sub(1, std::memory_order_relaxed);
  }

  AffinityTable& t_;
  std::vector<uint64_t> index_;
  size_t count_ = 0;
  std::vector<std::unique_ptr<Slot[]>> chunks_;
  uint32_t slots_used_ = 0;
  uint32_t free_head_ = kNil;
  uint32_t lru_head_ = kNil;
  uint32_t lru_tail_ = kNil;
  std::vector<std::string> long_keys_;  // keys over 39 bytes (rare: custom generateId)
  std::vector<uint32_t> long_free_;
};

AffinityTable::AffinityTable(size_t max_sessions)
    : per_backend_(std::make_unique<std::atomic<uint32_t>[]>(kMaxBackends)) {
  set_max_sessions(max_sessions);
  size_t n = 1;
  while (n < kMaxShards && n * kSessionsPerShard <= max_sessions) n *= 2;
  shard_shift_ = 64;
  for (size_t k = n; k > 1; k /= 2) --shard_shift_;
  shards_.reserve(n);
  for (size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(*this));
}

AffinityTable::~AffinityTable() = default;

AffinityTable::Shard& AffinityTable::shard_for(uint64_t hash) const {
  // The high bits pick the shard; the low 32 bits index within it, so the two are independent.
  return *shards_[shard_shift_ >= 64 ? 0 : hash >> shard_shift_];
}

void AffinityTable::set_max_sessions(size_t n) {
  max_sessions_.store(n ? n : 1, std::memory_order_relaxed);
}

void AffinityTable::learn(std::string_view sid, uint16_t backend, int64_t idle_ms,
                          int64_t now_ms) {
  if (sid.empty()) return;
  uint64_t h = hash_of(sid);
  Shard& s = shard_for(h);
  {
    std::lock_guard lock(s.mu);
    s.learn(h, sid, backend, idle_ms, now_ms);
  }
  report_learnt(sid, backend, idle_ms);
}

namespace {
thread_local int quiet_depth = 0;
}

AffinityTable::Quiet::Quiet() { ++quiet_depth; }
AffinityTable::Quiet::~Quiet() { --quiet_depth; }

void AffinityTable::report_learnt(std::string_view sid, uint16_t backend, int64_t idle_ms) {
  Observer* o = observer_.load(std::memory_order_acquire);
  if (o && quiet_depth == 0) o->learnt(sid, backend, idle_ms);
}

void AffinityTable::report_forgotten(std::string_view sid) {
  Observer* o = observer_.load(std::memory_order_acquire);
  if (o && quiet_depth == 0) o->forgotten(sid);
}

void AffinityTable::for_each(const Visitor& fn, int64_t now_ms) const {
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    s->for_each(fn, now_ms);
  }
}

std::optional<uint16_t> AffinityTable::touch(std::string_view sid, int64_t now_ms) {
  uint64_t h = hash_of(sid);
  Shard& s = shard_for(h);
  std::lock_guard lock(s.mu);
  return s.touch(h, sid, now_ms);
}

bool AffinityTable::pin(std::string_view sid, int64_t now_ms) {
  uint64_t h = hash_of(sid);
  Shard& s = shard_for(h);
  std::lock_guard lock(s.mu);
  return s.pin(h, sid, now_ms);
}

void AffinityTable::unpin(std::string_view sid, int64_t now_ms) {
  uint64_t h = hash_of(sid);
  Shard& s = shard_for(h);
  std::lock_guard lock(s.mu);
  s.unpin(h, sid, now_ms);
}

void AffinityTable::forget(std::string_view sid) {
  uint64_t h = hash_of(sid);
  Shard& s = shard_for(h);
  {
    std::lock_guard lock(s.mu);
    s.forget(h, sid);
  }
  report_forgotten(sid);
}

size_t AffinityTable::expire(int64_t now_ms, size_t budget) {
  std::lock_guard guard(expire_mutex_);
  size_t n = 0;
  for (size_t k = 0; k < shards_.size() && n < budget; ++k) {
    Shard& s = *shards_[next_expire_shard_];
    {
      std::lock_guard lock(s.mu);
      n += s.expire(now_ms, budget - n);
    }
    if (n < budget) next_expire_shard_ = (next_expire_shard_ + 1) % shards_.size();
  }
  expired_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

size_t AffinityTable::forget_backend(uint16_t backend) {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    n += s->forget_backend(backend);
  }
  return n;
}

std::vector<std::string> AffinityTable::sessions_of_backend(uint16_t backend) const {
  std::vector<std::string> out;
  out.reserve(sessions_of(backend));
  // Time 0: every entry counts, expired or not (the loop clock is far past 0).
  for_each(
      [&](std::string_view sid, uint16_t b, int64_t, bool) {
        if (b == backend) out.emplace_back(sid);
      },
      0);
  return out;
}

bool AffinityTable::mark_evicted(std::string_view sid, uint16_t backend) {
  uint64_t h = hash_of(sid);
  Shard& s = shard_for(h);
  std::lock_guard lock(s.mu);
  return s.mark_evicted(h, sid, backend);
}

size_t AffinityTable::bytes_per_entry(size_t sid_length) {
  // A 64-byte slot, plus index words: the index doubles at 3/4 full, so between 3/8 and 3/4
  // full (about 16 bytes per entry on average); plus a std::string and its heap block for
  // keys over 39 bytes.
  size_t bytes = sizeof(Slot) + 16;
  if (sid_length > kInlineKey) bytes += sizeof(std::string) + (sid_length + 1 + 8 + 15) / 16 * 16;
  return bytes;
}

}  // namespace stickyd
