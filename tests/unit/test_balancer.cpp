#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stickyd/balancer.hpp"

using stickyd::BalanceCandidate;
using stickyd::BalanceContext;
using stickyd::Balancer;
using stickyd::BalancePolicy;
using stickyd::ConsistentHashBounded;
using stickyd::LeastConnections;
using stickyd::make_balancer;
using stickyd::PowerOfTwoChoices;
using stickyd::SmoothWeightedRoundRobin;

namespace {

const BalancePolicy kAllPolicies[] = {BalancePolicy::RoundRobin, BalancePolicy::LeastConn,
                                      BalancePolicy::Random, BalancePolicy::Hash};

const char* name(BalancePolicy p) {
  switch (p) {
    case BalancePolicy::RoundRobin: return "round_robin";
    case BalancePolicy::LeastConn: return "least_conn";
    case BalancePolicy::Random: return "random";
    case BalancePolicy::Hash: return "hash";
  }
  return "?";
}

// Distinct, well spread client hashes, as hash_bytes of distinct addresses would give.
uint64_t client(uint64_t i) { return stickyd::hash_bytes("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256)); }

// ceil(1.25 * total_load * w / total_weight): the bound on a backend's load once the new
// session has been counted.
uint64_t bound(uint64_t total_load, uint64_t w, uint64_t total_weight) {
  return (5 * total_load * w + 4 * total_weight - 1) / (4 * total_weight);
}

}  // namespace

// ---------------------------------------------------------------- round robin (existing behaviour)

TEST_CASE("round robin: equal weights rotate") {
  SmoothWeightedRoundRobin rr;
  std::vector<BalanceCandidate> c(3);
  std::vector<int> got;
  for (int i = 0; i < 6; ++i) got.push_back(rr.pick(c));
  CHECK(got == std::vector<int>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("round robin: smooth weights 5,1,1 give a a b a c a a") {
  SmoothWeightedRoundRobin rr;
  std::vector<BalanceCandidate> c{{5, true}, {1, true}, {1, true}};
  std::string s;
  for (int i = 0; i < 7; ++i) s += static_cast<char>('a' + rr.pick(c, BalanceContext{}));
  CHECK(s == "aabacaa");
}

TEST_CASE("round robin: weight 0 and unusable backends take nothing") {
  SmoothWeightedRoundRobin rr;
  std::vector<BalanceCandidate> c{{0, true}, {1, false}, {2, true}};
  for (int i = 0; i < 5; ++i) CHECK(rr.pick(c) == 2);
  std::vector<BalanceCandidate> none{{0, true}, {3, false}};
  CHECK(rr.pick(none) == -1);
}

TEST_CASE("round robin: shares follow weights over many picks") {
  SmoothWeightedRoundRobin rr;
  std::vector<BalanceCandidate> c{{3, true}, {2, true}, {1, true}};
  std::map<int, int> n;
  for (int i = 0; i < 600; ++i) ++n[rr.pick(c)];
  CHECK(n[0] == 300);
  CHECK(n[1] == 200);
  CHECK(n[2] == 100);
}

TEST_CASE("round robin: load is ignored") {
  auto rr = stickyd::make_round_robin();
  std::vector<BalanceCandidate> c{{1, true, 1000}, {1, true, 0}};
  CHECK(rr->pick(c) == 0);
  CHECK(rr->pick(c) == 1);
  CHECK(rr->pick(c) == 0);
}

// ---------------------------------------------------------------- every policy

TEST_CASE("make_balancer builds the configured policy") {
  CHECK(dynamic_cast<SmoothWeightedRoundRobin*>(make_balancer(BalancePolicy::RoundRobin, 1).get()));
  CHECK(dynamic_cast<LeastConnections*>(make_balancer(BalancePolicy::LeastConn, 1).get()));
  CHECK(dynamic_cast<PowerOfTwoChoices*>(make_balancer(BalancePolicy::Random, 1).get()));
  CHECK(dynamic_cast<ConsistentHashBounded*>(make_balancer(BalancePolicy::Hash, 1).get()));
  CHECK(make_balancer(BalancePolicy::Random) != nullptr);  // random default seed
}

TEST_CASE("all policies: never pick weight 0 or unusable, -1 when none is usable") {
  for (BalancePolicy p : kAllPolicies) {
    CAPTURE(name(p));
    auto b = make_balancer(p, 42);
    // The excluded ones are the least loaded: load must not lure any policy to them.
    std::vector<BalanceCandidate> c{{0, true, 0}, {5, false, 0}, {1, true, 50}, {0, false, 0},
                                    {2, true, 70}};
    for (int i = 0; i < 500; ++i) {
      int got = b->pick(c, BalanceContext{client(static_cast<uint64_t>(i))});
      REQUIRE((got == 2 || got == 4));
      ++c[static_cast<size_t>(got)].load;
    }
    std::vector<BalanceCandidate> none{{0, true}, {3, false}, {1, false, 0}};
    CHECK(b->pick(none) == -1);
    CHECK(b->pick(std::vector<BalanceCandidate>{}) == -1);
    // ... and recover once a candidate comes back, including a changed candidate count.
    none[2].usable = true;
    CHECK(b->pick(none, BalanceContext{7}) == 2);
    std::vector<BalanceCandidate> one{{4, true, 9}};
    CHECK(b->pick(one) == 0);
  }
}

TEST_CASE("all policies: shares follow weights when each pick adds load") {
  for (BalancePolicy p : kAllPolicies) {
    CAPTURE(name(p));
    auto b = make_balancer(p, 7);
    std::vector<BalanceCandidate> c{{3, true}, {2, true}, {1, true}, {0, true}, {4, false}};
    const int picks = 6000;
    for (int i = 0; i < picks; ++i) {
      int got = b->pick(c, BalanceContext{client(static_cast<uint64_t>(i))});
      REQUIRE(got >= 0);
      REQUIRE(got <= 2);
      ++c[static_cast<size_t>(got)].load;
    }
    // Expected 3000/2000/1000. round_robin and least_conn are exact to a session or two,
    // random (power of two choices) within a few sessions; hash is at most 1.25x its share
    // (the bound) and, with 100 ring points per weight unit, not far below it.
    for (size_t k = 0; k < 3; ++k) {
      CAPTURE(k);
      const double expected = picks * c[k].weight / 6.0;
      if (p == BalancePolicy::Hash) {
        CHECK(c[k].load <= bound(picks, c[k].weight, 6));
        CHECK(c[k].load >= 0.75 * expected);
      } else {
        CHECK(c[k].load >= expected - 10);
        CHECK(c[k].load <= expected + 10);
      }
    }
  }
}

// ---------------------------------------------------------------- least_conn

TEST_CASE("least_conn: picks the least loaded relative to weight") {
  LeastConnections lc;
  // load/weight: 5, 3, 3.5, 2 (unusable), 0 (weight 0)
  std::vector<BalanceCandidate> c{{1, true, 5}, {4, true, 12}, {2, true, 7}, {1, false, 2}, {0, true, 0}};
  for (int i = 0; i < 4; ++i) CHECK(lc.pick(c) == 1);
  c[1].load = 15;  // 3.75: now candidate 2 (3.5) is lightest
  CHECK(lc.pick(c) == 2);
  c[0].load = 0;
  CHECK(lc.pick(c) == 0);
}

TEST_CASE("least_conn: exact ratio comparison with large numbers") {
  LeastConnections lc;
  // 4'000'000'000 / 4'000'000'001 vs 1 / 1: 64-bit products, no overflow, no rounding.
  std::vector<BalanceCandidate> c{{1, true, 1}, {4000000001u, true, 4000000000u}};
  CHECK(lc.pick(c) == 1);
  c[1].load = 4000000001u;  // equal ratios: rotation decides, 0 is next after 1
  CHECK(lc.pick(c) == 0);
}

TEST_CASE("least_conn: equal backends alternate instead of index 0 winning") {
  LeastConnections lc;
  std::vector<BalanceCandidate> c(3);  // all load 0, never incremented
  std::vector<int> got;
  for (int i = 0; i < 7; ++i) got.push_back(lc.pick(c));
  CHECK(got == std::vector<int>{0, 1, 2, 0, 1, 2, 0});
  // Unusable ones are skipped by the rotation.
  c[1].usable = false;
  got.clear();
  for (int i = 0; i < 4; ++i) got.push_back(lc.pick(c));
  CHECK(got == std::vector<int>{2, 0, 2, 0});
}

TEST_CASE("least_conn: loads stay proportional to weights at every step") {
  LeastConnections lc;
  std::vector<BalanceCandidate> c{{3, true}, {2, true}, {1, true}};
  for (int i = 0; i < 600; ++i) {
    int got = lc.pick(c);
    REQUIRE(got >= 0);
    ++c[static_cast<size_t>(got)].load;
    // No backend is ever more than one session ahead of its weighted share.
    for (auto& x : c) CHECK(x.load * 6 <= static_cast<uint32_t>(i + 1) * x.weight + 6);
  }
  CHECK(c[0].load == 300);
  CHECK(c[1].load == 200);
  CHECK(c[2].load == 100);
}

// ---------------------------------------------------------------- random (power of two choices)

TEST_CASE("random: deterministic under a seed") {
  std::vector<BalanceCandidate> c{{1, true}, {2, true}, {3, true}, {1, true}};
  PowerOfTwoChoices a(12345), b(12345), other(54321);
  std::vector<int> ga, gb, go;
  for (int i = 0; i < 200; ++i) {
    ga.push_back(a.pick(c));
    gb.push_back(b.pick(c));
    go.push_back(other.pick(c));
  }
  CHECK(ga == gb);
  CHECK(ga != go);
}

TEST_CASE("random: one usable candidate is always the answer") {
  PowerOfTwoChoices r(1);
  std::vector<BalanceCandidate> c{{1, false}, {0, true}, {5, true, 1000}, {2, false}};
  for (int i = 0; i < 100; ++i) CHECK(r.pick(c) == 2);
}

TEST_CASE("random: without load feedback the choice is weighted random") {
  PowerOfTwoChoices r(2024);
  // Loads all equal: the first draw wins every tie, so shares are the weights.
  std::vector<BalanceCandidate> c{{5, true}, {3, true}, {2, true}, {9, false}};
  std::map<int, int> n;
  const int picks = 20000;
  for (int i = 0; i < picks; ++i) ++n[r.pick(c)];
  CHECK(n.count(3) == 0);
  CHECK(n[0] == doctest::Approx(picks * 0.5).epsilon(0.04));
  CHECK(n[1] == doctest::Approx(picks * 0.3).epsilon(0.04));
  CHECK(n[2] == doctest::Approx(picks * 0.2).epsilon(0.04));
  // Both orders occur: the pick is random, not a fixed sequence.
  CHECK(n[1] > 0);
  CHECK(n[2] > 0);
}

TEST_CASE("random: two choices: the more loaded of two is never picked") {
  PowerOfTwoChoices r(99);
  std::vector<BalanceCandidate> c{{1, true, 10}, {1, true, 3}};
  for (int i = 0; i < 200; ++i) CHECK(r.pick(c) == 1);
  // With three, the heaviest (relative to weight) is never picked: it loses every pair.
  std::vector<BalanceCandidate> three{{2, true, 10}, {1, true, 9}, {4, true, 10}};  // 5, 9, 2.5
  std::map<int, int> n;
  for (int i = 0; i < 3000; ++i) ++n[r.pick(three)];
  CHECK(n[1] == 0);
  // 2 wins whenever drawn (weights 2,1,4: P(2 in pair) well above half), 0 otherwise.
  CHECK(n[2] > n[0]);
  CHECK(n[0] > 0);
}

TEST_CASE("random: load feedback keeps the spread tight") {
  PowerOfTwoChoices r(5);
  std::vector<BalanceCandidate> c(8);
  for (int i = 0; i < 8000; ++i) ++c[static_cast<size_t>(r.pick(c))].load;
  uint32_t lo = UINT32_MAX, hi = 0;
  for (auto& x : c) {
    lo = std::min(lo, x.load);
    hi = std::max(hi, x.load);
  }
  CHECK(hi - lo <= 10);  // vs ~±30 from plain random
}

// ---------------------------------------------------------------- hash (consistent, bounded loads)

TEST_CASE("hash_bytes: 64-bit FNV-1a") {
  CHECK(stickyd::hash_bytes("") == 0xcbf29ce484222325ULL);
  CHECK(stickyd::hash_bytes("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(stickyd::hash_bytes("foobar") == 0x85944171f73967e8ULL);
  CHECK(stickyd::hash_bytes("10.0.0.1") != stickyd::hash_bytes("10.0.0.2"));
}

TEST_CASE("hash: same client, same backend; independent of seed and instance") {
  auto a = make_balancer(BalancePolicy::Hash, 1);
  auto b = make_balancer(BalancePolicy::Hash, 2);
  std::vector<BalanceCandidate> c{{1, true}, {1, true}, {1, true}, {1, true}};
  std::map<int, int> spread;
  for (uint64_t i = 0; i < 500; ++i) {
    BalanceContext ctx{client(i)};
    int first = a->pick(c, ctx);
    REQUIRE(first >= 0);
    ++spread[first];
    for (int k = 0; k < 3; ++k) CHECK(a->pick(c, ctx) == first);
    CHECK(b->pick(c, ctx) == first);
  }
  CHECK(spread.size() == 4);  // different clients land on different backends
  for (auto& [i, n] : spread) CHECK(n > 60);  // ~125 each
}

TEST_CASE("hash: ring is cached and rebuilt only when weights or usability change") {
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c{{1, true}, {2, true}, {1, true}};
  CHECK(h.pick(c, BalanceContext{1}) >= 0);
  CHECK(h.rebuilds() == 1);
  CHECK(h.ring_size() == 400);  // 100 points per weight unit
  for (uint64_t i = 0; i < 100; ++i) {
    c[i % 3].load = static_cast<uint32_t>(i);  // load changes do not rebuild
    h.pick(c, BalanceContext{client(i)});
  }
  CHECK(h.rebuilds() == 1);
  c[1].usable = false;
  h.pick(c);
  CHECK(h.rebuilds() == 2);
  CHECK(h.ring_size() == 200);
  // Toggling back and forth (as the router's all-down fallback does) reuses both rings.
  for (int i = 0; i < 10; ++i) {
    c[1].usable = !c[1].usable;
    h.pick(c);
  }
  CHECK(h.rebuilds() == 2);
  c[0].weight = 3;
  h.pick(c);
  CHECK(h.rebuilds() == 3);
}

TEST_CASE("hash: huge weights are scaled to a bounded ring") {
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c{{1000000, true}, {500000, true}, {1, true}};
  CHECK(h.pick(c, BalanceContext{3}) >= 0);
  CHECK(h.ring_size() <= ConsistentHashBounded::kMaxRingPoints + 3);
  CHECK(h.ring_size() > ConsistentHashBounded::kMaxRingPoints / 2);
  // A ramp step too small to change any point count reuses the ring.
  const uint64_t rebuilds = h.rebuilds();
  c[0].weight = 999999;
  h.pick(c, BalanceContext{3});
  CHECK(h.rebuilds() == rebuilds);
  c[0].weight = 1000000;
  // The tiny one keeps at least one point and can still be reached.
  std::map<int, int> n;
  for (uint64_t i = 0; i < 3000; ++i) {
    int got = h.pick(c, BalanceContext{client(i)});
    ++n[got];
    ++c[static_cast<size_t>(got)].load;
  }
  CHECK(n[0] == doctest::Approx(2000).epsilon(0.25));
  CHECK(n[1] == doctest::Approx(1000).epsilon(0.25));
}

TEST_CASE("hash: removing a backend moves only its own clients") {
  const uint64_t clients = 3000;
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c{{1, true}, {1, true}, {1, true}};  // loads all 0
  std::vector<int> before(clients);
  for (uint64_t i = 0; i < clients; ++i) before[i] = h.pick(c, BalanceContext{client(i)});

  for (size_t removed = 0; removed < 3; ++removed) {
    CAPTURE(removed);
    for (auto& x : c) x.usable = true;
    c[removed].usable = false;
    uint64_t moved = 0;
    for (uint64_t i = 0; i < clients; ++i) {
      int now = h.pick(c, BalanceContext{client(i)});
      REQUIRE(now >= 0);
      CHECK(now != static_cast<int>(removed));
      if (before[i] == static_cast<int>(removed)) {
        ++moved;
      } else {
        CHECK(now == before[i]);  // survivors' clients stay put
      }
    }
    CHECK(moved > 0);
    CHECK(moved <= clients * 40 / 100);
  }
  // Same with weight 0 (drain), and the original mapping comes back afterwards.
  for (auto& x : c) x.usable = true;
  c[2].weight = 0;
  for (uint64_t i = 0; i < clients; ++i)
    if (before[i] != 2) CHECK(h.pick(c, BalanceContext{client(i)}) == before[i]);
  c[2].weight = 1;
  for (uint64_t i = 0; i < clients; ++i) CHECK(h.pick(c, BalanceContext{client(i)}) == before[i]);
}

TEST_CASE("hash: raising one weight only moves clients to that backend") {
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c{{1, true}, {1, true}, {1, true}};
  std::vector<int> before(2000);
  for (uint64_t i = 0; i < before.size(); ++i) before[i] = h.pick(c, BalanceContext{client(i)});
  c[1].weight = 2;  // e.g. slow start ramping up
  size_t to1 = 0;
  for (uint64_t i = 0; i < before.size(); ++i) {
    int now = h.pick(c, BalanceContext{client(i)});
    if (now != before[i]) {
      CHECK(now == 1);
      ++to1;
    }
  }
  CHECK(to1 > 0);
}

TEST_CASE("hash: no backend exceeds the bound as distinct clients arrive") {
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c{{1, true}, {2, true}, {1, true}, {3, true}, {1, true}, {0, true},
                                  {2, false}};
  const uint64_t total_weight = 8;
  uint64_t total = 0;
  for (uint64_t i = 0; i < 4000; ++i) {
    int got = h.pick(c, BalanceContext{client(i)});
    REQUIRE(got >= 0);
    REQUIRE(got <= 4);
    ++c[static_cast<size_t>(got)].load;
    ++total;
    for (size_t k = 0; k < 5; ++k) {
      CAPTURE(k);
      CAPTURE(total);
      REQUIRE(c[k].load <= bound(total, c[k].weight, total_weight));
    }
  }
}

TEST_CASE("hash: one hot client spreads once its backend reaches the bound") {
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c(4);
  const BalanceContext hot{client(17)};
  const int home = h.pick(c, hot);
  uint64_t total = 0;
  for (int i = 0; i < 400; ++i) {
    int got = h.pick(c, hot);
    ++c[static_cast<size_t>(got)].load;
    ++total;
    for (auto& x : c) REQUIRE(x.load <= bound(total, 1, 4));
  }
  CHECK(c[static_cast<size_t>(home)].load == bound(total, 1, 4));  // home is filled to the bound
  for (auto& x : c) CHECK(x.load > 0);
}

TEST_CASE("hash: with balanced loads a client stays on its backend") {
  ConsistentHashBounded h;
  std::vector<BalanceCandidate> c{{1, true, 100}, {1, true, 100}, {1, true, 100}};
  for (uint64_t i = 0; i < 300; ++i) {
    BalanceContext ctx{client(i)};
    int first = h.pick(c, ctx);
    for (int k = 0; k < 2; ++k) CHECK(h.pick(c, ctx) == first);
  }
}
