#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "stickyd/balancer.hpp"

using stickyd::BalanceCandidate;
using stickyd::SmoothWeightedRoundRobin;

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
  for (int i = 0; i < 7; ++i) s += static_cast<char>('a' + rr.pick(c));
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
