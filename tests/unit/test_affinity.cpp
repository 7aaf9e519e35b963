#include <doctest/doctest.h>

#include <string>

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
  CHECK(b > 64);
  CHECK(b < 200);
}
