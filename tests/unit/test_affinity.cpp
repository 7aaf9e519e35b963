#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stickyd/affinity.hpp"

using stickyd::AffinityTable;

TEST_CASE("affinity: learn then touch returns the backend and refreshes the idle time") {
  AffinityTable t(10);
  t.learn("sid-a", 2, 1000, 0);
  CHECK(t.size() == 1);
  CHECK(t.touch("sid-a", 900) == 2);
  // Refreshed at 900: alive until 1900.
  CHECK(t.touch("sid-a", 1800) == 2);
  CHECK(t.touch("sid-b", 0) == std::nullopt);
}

TEST_CASE("affinity: an idle entry expires lazily on touch and by the sweep") {
  AffinityTable t(10);
  t.learn("a", 0, 1000, 0);
  t.learn("b", 1, 1000, 500);
  CHECK(t.touch("a", 1000) == std::nullopt);  // due exactly at 1000
  CHECK(t.stats().expired == 1);
  CHECK(t.size() == 1);
  CHECK(t.expire(1499) == 0);
  CHECK(t.expire(1500) == 1);
  CHECK(t.size() == 0);
  CHECK(t.stats().expired == 2);
}

TEST_CASE("affinity: a pinned entry never expires and is never evicted") {
  AffinityTable t(2);
  t.learn("ws", 1, 1000, 0);
  REQUIRE(t.pin("ws", 0));
  CHECK(t.pinned() == 1);
  CHECK(t.expire(1'000'000) == 0);
  CHECK(t.touch("ws", 1'000'000) == 1);
  // Filling the table evicts only unpinned entries.
  t.learn("x", 0, 1000, 1'000'000);
  t.learn("y", 0, 1000, 1'000'001);
  CHECK(t.size() == 2);
  CHECK(t.touch("ws", 1'000'002) == 1);
  CHECK(t.touch("x", 1'000'002) == std::nullopt);
  CHECK(t.stats().evicted == 1);
  // Unpinned: idle time counts from the unpin.
  t.unpin("ws", 2'000'000);
  CHECK(t.pinned() == 0);
  CHECK(t.touch("ws", 2'000'999) == 1);
  CHECK(t.expire(3'000'000) == 2);
  CHECK(t.size() == 0);
}

TEST_CASE("affinity: pins nest, unpin of unknown or unpinned sids is harmless") {
  AffinityTable t(4);
  CHECK_FALSE(t.pin("nobody", 0));
  t.unpin("nobody", 0);
  t.learn("s", 0, 100, 0);
  t.unpin("s", 0);  // not pinned: no effect
  CHECK(t.pin("s", 0));
  CHECK(t.pin("s", 0));
  t.unpin("s", 10);
  CHECK(t.expire(10'000) == 0);  // still pinned once
  t.unpin("s", 10'000);
  CHECK(t.expire(10'100) == 1);
}

TEST_CASE("affinity: least recently used entries are evicted first") {
  AffinityTable t(3);
  t.learn("a", 0, 100000, 0);
  t.learn("b", 1, 100000, 1);
  t.learn("c", 2, 100000, 2);
  CHECK(t.touch("a", 3) == 0);  // a is now the most recent; b the least
  t.learn("d", 0, 100000, 4);
  CHECK(t.size() == 3);
  CHECK(t.touch("b", 5) == std::nullopt);
  CHECK(t.touch("a", 5) == 0);
  CHECK(t.touch("c", 5) == 2);
  CHECK(t.touch("d", 5) == 0);
  CHECK(t.stats().evicted == 1);
  CHECK(t.stats().learnt == 4);
}

TEST_CASE("affinity: learning a known sid re-points it without growing") {
  AffinityTable t(3);
  t.learn("a", 0, 1000, 0);
  t.learn("a", 2, 1000, 10);
  CHECK(t.size() == 1);
  CHECK(t.touch("a", 20) == 2);
  CHECK(t.stats().learnt == 1);
  t.forget("a");
  CHECK(t.size() == 0);
  CHECK(t.touch("a", 20) == std::nullopt);
}

TEST_CASE("affinity: the sweep is bounded per call") {
  AffinityTable t(100);
  for (int i = 0; i < 50; ++i) t.learn("s" + std::to_string(i), 0, 10, i);
  CHECK(t.expire(1000, 20) == 20);
  CHECK(t.size() == 30);
  CHECK(t.expire(1000) == 30);
}

TEST_CASE("affinity: cost per entry is small and stated") {
  size_t b = AffinityTable::bytes_per_entry(20);
  CHECK(b >= 64);
  CHECK(b <= 80);
  CHECK(AffinityTable::bytes_per_entry(36) == b);  // a UUID still fits in the slot
  CHECK(AffinityTable::bytes_per_entry(100) > b);  // long keys live outside the slot
}

TEST_CASE("affinity: behaves like a plain map under random operations (differential)") {
  // 200k random operations against a std::map model, on a table large enough to be sharded
  // and to grow and shrink its indexes; keys of 1..40 bytes (inline and out-of-slot).
  AffinityTable t(1'000'000);
  CHECK(t.shard_count() > 1);
  std::map<std::string, uint16_t> model;
  std::mt19937 rng(7);
  auto key = [&](uint32_t i) {
    std::string k = std::to_string(i);
    if (i % 7 == 0) k.append(45, 'x');  // long key
    return k;
  };
  for (int op = 0; op < 200000; ++op) {
    uint32_t i = rng() % 20000;
    std::string k = key(i);
    switch (rng() % 4) {
      case 0:
      case 1: {
        auto b = static_cast<uint16_t>(rng() % 5);
        t.learn(k, b, 1'000'000, 0);
        model[k] = b;
        break;
      }
      case 2: {
        auto got = t.touch(k, 1);
        auto it = model.find(k);
        if (it == model.end()) REQUIRE(got == std::nullopt);
        else REQUIRE(got == it->second);
        break;
      }
      case 3:
        t.forget(k);
        model.erase(k);
        break;
    }
    REQUIRE(t.size() == model.size());
  }
  uint32_t per[5] = {};
  for (auto& [k, b] : model) ++per[b];
  for (uint16_t b = 0; b < 5; ++b) CHECK(t.sessions_of(b) == per[b]);
  CHECK(t.forget_backend(3) == per[3]);
  CHECK(t.sessions_of(3) == 0);
  for (auto& [k, b] : model) CHECK(t.touch(k, 2) == (b == 3 ? std::nullopt : std::optional<uint16_t>(b)));
  // Everything expires; indexes shrink back without losing anything in between.
  CHECK(t.expire(10'000'000, SIZE_MAX) == model.size() - per[3]);
  CHECK(t.size() == 0);
  t.learn("again", 1, 1000, 0);
  CHECK(t.touch("again", 1) == 1);
}

TEST_CASE("affinity: a full sharded table stays within max_sessions") {
  AffinityTable t(40000);
  CHECK(t.shard_count() > 1);
  for (int i = 0; i < 100000; ++i) t.learn("s" + std::to_string(i), 0, 1'000'000, i);
  CHECK(t.size() <= 40000);
  CHECK(t.size() >= 39000);
  CHECK(t.stats().evicted == 100000 - t.size());
  CHECK(t.touch("s99999", 100000) == 0);  // the newest survive
  CHECK(t.touch("s0", 100000) == std::nullopt);
}

TEST_CASE("affinity: several threads share one table (workers)") {
  AffinityTable t(1'000'000);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&t, w] {
      for (int i = 0; i < 20000; ++i) {
        std::string k = std::to_string(w) + ":" + std::to_string(i);
        t.learn(k, static_cast<uint16_t>(w), 100000, 0);
        t.pin(k, 1);
        t.unpin(k, 2);
        if (i % 2) t.forget(k);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(t.size() == 4 * 10000);
  CHECK(t.pinned() == 0);
  for (uint16_t w = 0; w < 4; ++w) CHECK(t.sessions_of(w) == 10000);
  CHECK(t.touch("2:10", 3) == 2);
  CHECK(t.touch("2:11", 3) == std::nullopt);
}

TEST_CASE("affinity: sessions_of_backend lists one backend's sids across shards") {
  AffinityTable t(200000);  // several shards
  REQUIRE(t.shard_count() > 1);
  std::vector<std::string> want;
  for (int i = 0; i < 3000; ++i) {
    std::string sid = "sid-" + std::to_string(i);
    uint16_t b = static_cast<uint16_t>(i % 3);
    t.learn(sid, b, 60000, 0);
    if (b == 1) want.push_back(sid);
  }
  REQUIRE(t.pin("sid-1", 0));  // pinned entries are listed too
  t.forget("sid-4");
  want.erase(std::find(want.begin(), want.end(), "sid-4"));
  std::string long_sid(60, 'x');  // a key stored out of line
  t.learn(long_sid, 1, 60000, 0);
  want.push_back(long_sid);
  std::vector<std::string> got = t.sessions_of_backend(1);
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  CHECK(got == want);
  CHECK(got.size() == t.sessions_of(1));
  CHECK(t.sessions_of_backend(7).empty());
}

TEST_CASE("affinity: mark_evicted re-points a session of its backend only, keeping its pin") {
  AffinityTable t(100);
  t.learn("a", 2, 1000, 0);
  t.learn("b", 3, 1000, 0);
  REQUIRE(t.pin("a", 0));
  CHECK_FALSE(t.mark_evicted("b", 2));  // belongs elsewhere
  CHECK_FALSE(t.mark_evicted("zz", 2));  // unknown
  CHECK(t.mark_evicted("a", 2));
  CHECK_FALSE(t.mark_evicted("a", 2));  // once
  CHECK(t.sessions_of(2) == 0);
  CHECK(t.sessions_of(3) == 1);
  CHECK(t.size() == 2);
  CHECK(t.sessions_of_backend(2).empty());
  CHECK(t.touch("a", 5000) == AffinityTable::kEvicted);  // pinned: still there
  t.unpin("a", 5000);
  CHECK(t.touch("a", 5999) == AffinityTable::kEvicted);
  CHECK(t.touch("a", 7000) == std::nullopt);  // then expires like any entry
}
