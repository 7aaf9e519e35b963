#include "stickyd/affinity.hpp"

#include <algorithm>

namespace stickyd {

void AffinityTable::link_front(Entry* e) {
  e->prev = nullptr;
  e->next = head_;
  if (head_) head_->prev = e;
  head_ = e;
  if (!tail_) tail_ = e;
}

void AffinityTable::unlink(Entry* e) {
  if (e->prev) e->prev->next = e->next; else head_ = e->next;
  if (e->next) e->next->prev = e->prev; else tail_ = e->prev;
  e->prev = e->next = nullptr;
}

void AffinityTable::count(uint16_t backend, int delta) {
  if (backend >= per_backend_.size()) per_backend_.resize(backend + 1u, 0);
  per_backend_[backend] = static_cast<uint32_t>(static_cast<int64_t>(per_backend_[backend]) + delta);
}

void AffinityTable::erase(Map::iterator it) {
  Entry& e = it->second;
  count(e.backend, -1);
  if (e.pins == 0) unlink(&e); else --pinned_;
  map_.erase(it);
}

void AffinityTable::learn(std::string_view sid, uint16_t backend, int64_t idle_ms,
                          int64_t now_ms) {
  auto it = map_.find(sid);
  if (it == map_.end()) {
    // Make room first: evict the least recently used unpinned entries.
    while (map_.size() >= max_sessions_ && tail_) {
      erase(map_.find(*tail_->key));
      ++stats_.evicted;
    }
    it = map_.emplace(std::string(sid), Entry{}).first;
    it->second.key = &it->first;
    it->second.backend = backend;
    count(backend, +1);
    link_front(&it->second);
    ++stats_.learnt;
  } else {
    if (it->second.pins == 0) {
      unlink(&it->second);
      link_front(&it->second);
    }
    count(it->second.backend, -1);
    count(backend, +1);
  }
  Entry& e = it->second;
  e.backend = backend;
  e.idle_ms = static_cast<uint32_t>(std::clamp<int64_t>(idle_ms, 1, UINT32_MAX));
  e.expires_at = now_ms + e.idle_ms;
}

std::optional<uint16_t> AffinityTable::touch(std::string_view sid, int64_t now_ms) {
  auto it = map_.find(sid);
  if (it == map_.end()) return std::nullopt;
  Entry& e = it->second;
  if (e.pins == 0) {
    if (e.expires_at <= now_ms) {
      erase(it);
      ++stats_.expired;
      return std::nullopt;
    }
    unlink(&e);
    link_front(&e);
  }
  e.expires_at = now_ms + e.idle_ms;
  return e.backend;
}

bool AffinityTable::pin(std::string_view sid, int64_t now_ms) {
  auto it = map_.find(sid);
  if (it == map_.end()) return false;
  Entry& e = it->second;
  if (e.pins == 0) {
    unlink(&e);
    ++pinned_;
  }
  if (e.pins < UINT16_MAX) ++e.pins;
  e.expires_at = now_ms + e.idle_ms;
  return true;
}

void AffinityTable::unpin(std::string_view sid, int64_t now_ms) {
  auto it = map_.find(sid);
  if (it == map_.end() || it->second.pins == 0) return;
  Entry& e = it->second;
  if (--e.pins == 0) {
    --pinned_;
    link_front(&e);
  }
  e.expires_at = now_ms + e.idle_ms;  // idle time counts from the end of the poll/tunnel
}

void AffinityTable::forget(std::string_view sid) {
  auto it = map_.find(sid);
  if (it != map_.end()) erase(it);
}

size_t AffinityTable::forget_backend(uint16_t backend) {
  size_t n = 0;
  for (auto it = map_.begin(); it != map_.end();) {
    if (it->second.backend == backend) {
      auto next = std::next(it);
      erase(it);
      it = next;
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

size_t AffinityTable::expire(int64_t now_ms, size_t budget) {
  // The LRU tail is the least recently refreshed entry. Idle times may differ per session,
  // so an entry that is not yet due can hide a due one behind it; touch() checks lazily too.
  size_t n = 0;
  while (tail_ && n < budget && tail_->expires_at <= now_ms) {
    erase(map_.find(*tail_->key));
    ++stats_.expired;
    ++n;
  }
  return n;
}

size_t AffinityTable::bytes_per_entry(size_t sid_length) {
  // libstdc++ hash node: next pointer + cached hash + pair<string, Entry>, rounded up to
  // malloc's 16-byte granularity with its 8-byte header; plus one bucket pointer; plus the
  // key's own heap block when it does not fit the 15-byte small-string buffer.
  size_t node = sizeof(void*) + sizeof(size_t) + sizeof(std::string) + sizeof(Entry);
  auto chunk = [](size_t n) { return (n + 8 + 15) / 16 * 16; };
  size_t key = sid_length > 15 ? chunk(sid_length + 1) : 0;
  return chunk(node) + sizeof(void*) + key;
}

}  // namespace stickyd
