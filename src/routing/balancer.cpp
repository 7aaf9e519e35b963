#include "stickyd/balancer.hpp"

#include <algorithm>
#include <random>
#include <utility>

namespace stickyd {

namespace {

__extension__ typedef unsigned __int128 u128;

bool takes_new(const BalanceCandidate& c) { return c.usable && c.weight != 0; }

// load_a / weight_a < load_b / weight_b, exactly (load and weight are 32-bit: no overflow).
bool lighter(const BalanceCandidate& a, const BalanceCandidate& b) {
  return uint64_t{a.load} * b.weight < uint64_t{b.load} * a.weight;
}

// splitmix64's finaliser: a bijection on 64-bit values with good avalanche.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t splitmix64(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  return mix64(state);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

constexpr uint64_t kRingSalt = 0x5f1c6d3a2b7e9041ULL;
constexpr uint64_t kClientSalt = 0x2545f4914f6cdd1dULL;

}  // namespace

// ---------------------------------------------------------------- round robin

int SmoothWeightedRoundRobin::pick(std::span<const BalanceCandidate> candidates,
                                   const BalanceContext&) {
  if (current_.size() != candidates.size()) current_.assign(candidates.size(), 0);
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const BalanceCandidate& c = candidates[i];
    if (!takes_new(c)) continue;
    current_[i] += c.weight;
    total += c.weight;
    if (best < 0 || current_[i] > current_[static_cast<size_t>(best)]) best = static_cast<int>(i);
  }
  if (best >= 0) current_[static_cast<size_t>(best)] -= total;
  return best;
}

// ---------------------------------------------------------------- least connections

int LeastConnections::pick(std::span<const BalanceCandidate> candidates, const BalanceContext&) {
  const size_t n = candidates.size();
  if (n == 0) return -1;
  if (next_ >= n) next_ = 0;
  size_t best = n;
  for (size_t k = 0; k < n; ++k) {
    size_t i = next_ + k;
    if (i >= n) i -= n;
    if (!takes_new(candidates[i])) continue;
    // Strictly lighter only: among equals the first met after the previous pick wins.
    if (best == n || lighter(candidates[i], candidates[best])) best = i;
  }
  if (best == n) return -1;
  next_ = best + 1;
  return static_cast<int>(best);
}

// ---------------------------------------------------------------- power of two choices

PowerOfTwoChoices::PowerOfTwoChoices(uint64_t seed) {
  uint64_t st = seed;
  for (uint64_t& s : s_) s = splitmix64(st);
}

uint64_t PowerOfTwoChoices::next() {  // xoshiro256**
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t PowerOfTwoChoices::below(uint64_t bound) {
  // Lemire's multiply-shift; the bias (bound / 2^64) is far below anything measurable here.
  return static_cast<uint64_t>((static_cast<u128>(next()) * bound) >> 64);
}

int PowerOfTwoChoices::pick(std::span<const BalanceCandidate> candidates, const BalanceContext&) {
  uint64_t total = 0;
  size_t usable = 0;
  size_t only = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (!takes_new(candidates[i])) continue;
    total += candidates[i].weight;
    ++usable;
    only = i;
  }
  if (usable == 0) return -1;
  if (usable == 1) return static_cast<int>(only);

  // Weighted draw, optionally without `skip`; `excluded_weight` is skip's weight.
  auto draw = [&](size_t skip, uint64_t excluded_weight) {
    uint64_t r = below(total - excluded_weight);
    size_t last = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (i == skip || !takes_new(candidates[i])) continue;
      last = i;
      if (r < candidates[i].weight) return i;
      r -= candidates[i].weight;
    }
    return last;  // unreachable: r < the sum of the weights scanned
  };
  const size_t none = candidates.size();
  const size_t a = draw(none, 0);
  const size_t b = draw(a, candidates[a].weight);
  return static_cast<int>(lighter(candidates[b], candidates[a]) ? b : a);
}

// ---------------------------------------------------------------- consistent hash, bounded loads

void ConsistentHashBounded::build(Ring& r) {
  size_t count = 0;
  for (uint32_t n : r.key) count += n;
  std::vector<std::pair<uint64_t, uint32_t>> ring;
  ring.reserve(count);
  for (size_t i = 0; i < r.key.size(); ++i) {
    // A candidate's points depend on (index, replica) only and form a prefix in replica
    // order: changing one weight adds or removes that candidate's points and nothing else.
    // mix64 is a bijection, so no two points ever share a position.
    for (uint64_t j = 0; j < r.key[i]; ++j)
      ring.emplace_back(mix64(((uint64_t{i} << 32) | j) ^ kRingSalt), static_cast<uint32_t>(i));
  }
  std::sort(ring.begin(), ring.end());
  r.points.resize(ring.size());
  r.owner.resize(ring.size());
  for (size_t k = 0; k < ring.size(); ++k) {
    r.points[k] = ring[k].first;
    r.owner[k] = ring[k].second;
  }
}

void ConsistentHashBounded::ensure_ring(std::span<const BalanceCandidate> candidates) {
  // The cache key is the number of ring points each candidate gets (0 when it takes no new
  // sessions): weight changes that do not change any count (e.g. a slow-start ramp of big,
  // scaled-down weights) reuse the ring.
  uint64_t wanted = 0;
  for (const BalanceCandidate& c : candidates)
    if (takes_new(c)) wanted += uint64_t{c.weight} * kPointsPerWeight;
  scratch_key_.resize(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const BalanceCandidate& c = candidates[i];
    uint64_t n = 0;
    if (takes_new(c)) {
      n = uint64_t{c.weight} * kPointsPerWeight;
      if (wanted > kMaxRingPoints) {
        n = static_cast<uint64_t>(static_cast<u128>(n) * kMaxRingPoints / wanted);
        if (n == 0) n = 1;
      }
    }
    scratch_key_[i] = static_cast<uint32_t>(n);
  }
  if (scratch_key_ == ring_.key) return;
  std::swap(ring_, previous_);
  if (scratch_key_ == ring_.key) return;
  ring_.key = scratch_key_;
  build(ring_);
  ++rebuilds_;
}

int ConsistentHashBounded::pick(std::span<const BalanceCandidate> candidates,
                                const BalanceContext& ctx) {
  ensure_ring(candidates);
  const std::vector<uint64_t>& points = ring_.points;
  if (points.empty()) return -1;

  uint64_t total_load = 0;
  uint64_t total_weight = 0;
  size_t usable = 0;
  for (const BalanceCandidate& c : candidates) {
    if (!takes_new(c)) continue;
    total_load += c.load;
    total_weight += c.weight;
    ++usable;
  }
  visited_.assign(candidates.size(), 0);

  const uint64_t h = mix64(ctx.client_hash ^ kClientSalt);
  size_t pos = static_cast<size_t>(std::lower_bound(points.begin(), points.end(), h) - points.begin());
  if (pos == points.size()) pos = 0;

  // ceil(1.25 * (total_load + 1) * w / total_weight) = ceil(5 (L+1) w / 4 W), in 128 bits.
  const u128 num_base = static_cast<u128>(total_load + 1) * 5;
  const u128 den = static_cast<u128>(total_weight) * 4;
  size_t checked = 0;
  for (size_t k = 0; k < points.size() && checked < usable; ++k) {
    size_t at = pos + k;
    if (at >= points.size()) at -= points.size();
    const uint32_t i = ring_.owner[at];
    if (visited_[i]) continue;
    visited_[i] = 1;
    ++checked;
    const BalanceCandidate& c = candidates[i];
    const u128 limit = (num_base * c.weight + den - 1) / den;
    if (c.load < limit) return static_cast<int>(i);
  }
  // Cannot happen (the limits sum to more than total_load), kept as a safe answer.
  return static_cast<int>(ring_.owner[pos]);
}

// ---------------------------------------------------------------- helpers, factories

uint64_t hash_bytes(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char ch : data) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

std::unique_ptr<Balancer> make_balancer(BalancePolicy policy, uint64_t seed) {
  switch (policy) {
    case BalancePolicy::RoundRobin: return std::make_unique<SmoothWeightedRoundRobin>();
    case BalancePolicy::LeastConn: return std::make_unique<LeastConnections>();
    case BalancePolicy::Random: return std::make_unique<PowerOfTwoChoices>(seed);
    case BalancePolicy::Hash: return std::make_unique<ConsistentHashBounded>();
  }
  return std::make_unique<SmoothWeightedRoundRobin>();
}

std::unique_ptr<Balancer> make_round_robin() { return std::make_unique<SmoothWeightedRoundRobin>(); }

}  // namespace stickyd
