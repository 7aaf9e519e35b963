// Choice of a backend for requests that carry no known session (handshakes, unknown sids).
// Policies sit behind one interface so the router does not care which one is configured.
//
//   round_robin  smooth weighted round robin (nginx)
//   least_conn   lowest load/weight, ties rotate
//   random       power of two choices: two distinct weighted-random candidates, lower
//                load/weight wins; deterministic under a seed
//   hash         consistent hashing of the client address with bounded loads (c = 1.25)
//
// Every policy: a candidate with weight 0 or !usable is never picked; -1 when none is
// usable. Balancers keep state between picks and are not thread-safe (one per loop).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "stickyd/config.hpp"  // BalancePolicy

namespace stickyd {

struct BalanceCandidate {
  uint32_t weight = 1;  // effective weight (0 = takes no new sessions; may be ramped by slow start)
  bool usable = true;   // false while down / in drain / maint
  uint32_t load = 0;    // live sessions + open tunnels + requests in flight on this backend
};

struct BalanceContext {
  uint64_t client_hash = 0;  // hash of the client address (for `hash`), see hash_bytes()
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Index into `candidates` for a new session, or -1 when no candidate is usable.
  // Candidates are identified by their index: keep the order stable between picks.
  virtual int pick(std::span<const BalanceCandidate> candidates, const BalanceContext& ctx) = 0;
  int pick(std::span<const BalanceCandidate> candidates) { return pick(candidates, BalanceContext{}); }
};

// Smooth weighted round robin (the nginx algorithm): with weights 5,1,1 the order is
// a a b a c a a, never bursts of one backend; equal weights give plain rotation.
class SmoothWeightedRoundRobin final : public Balancer {
 public:
  using Balancer::pick;
  int pick(std::span<const BalanceCandidate> candidates, const BalanceContext& ctx) override;

 private:
  std::vector<int64_t> current_;
};

// Lowest load/weight (load_a * weight_b < load_b * weight_a, 64-bit). Among equals the scan
// starts just after the previous pick, so equal backends alternate instead of index 0 winning.
class LeastConnections final : public Balancer {
 public:
  using Balancer::pick;
  int pick(std::span<const BalanceCandidate> candidates, const BalanceContext& ctx) override;

 private:
  size_t next_ = 0;
};

// Power of two choices: two distinct usable candidates drawn at random with probability
// proportional to weight; the one with lower load/weight wins (the first drawn on a tie).
// xoshiro256** seeded through splitmix64: same seed, same picks.
class PowerOfTwoChoices final : public Balancer {
 public:
  explicit PowerOfTwoChoices(uint64_t seed);
  using Balancer::pick;
  int pick(std::span<const BalanceCandidate> candidates, const BalanceContext& ctx) override;

 private:
  uint64_t next();
  uint64_t below(uint64_t bound);  // uniform in [0, bound), bound > 0
  uint64_t s_[4];
};

// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam; c = 1.25).
// Ring: 100 points per weight unit of each usable candidate (scaled down proportionally
// when the ring would exceed kMaxRingPoints), point positions derived from (index, replica)
// only, so the ring is the same in every process and independent of any seed. The ring is
// rebuilt only when some candidate's number of points changes (usable set or weights); the
// previous ring is kept too, so toggling between two sets does not rebuild every time.
// Lookup: binary search for the client's point, then clockwise to the first candidate whose
// load < ceil(1.25 * (total_load + 1) * weight / total_weight) (loads of usable candidates).
class ConsistentHashBounded final : public Balancer {
 public:
  static constexpr uint32_t kPointsPerWeight = 100;
  static constexpr size_t kMaxRingPoints = size_t{1} << 16;

  using Balancer::pick;
  int pick(std::span<const BalanceCandidate> candidates, const BalanceContext& ctx) override;

  size_t ring_size() const { return ring_.points.size(); }
  uint64_t rebuilds() const { return rebuilds_; }  // for tests and stats

 private:
  struct Ring {
    std::vector<uint32_t> key;     // ring points per candidate (0: takes no new sessions)
    std::vector<uint64_t> points;  // sorted positions
    std::vector<uint32_t> owner;   // candidate index of points[i]
  };
  void ensure_ring(std::span<const BalanceCandidate> candidates);
  static void build(Ring& r);

  Ring ring_;
  Ring previous_;
  std::vector<uint32_t> scratch_key_;
  std::vector<uint64_t> limit_;     // per pick, reused
  std::vector<uint8_t> visited_;    // per pick, reused
  uint64_t rebuilds_ = 0;
};

// 64-bit FNV-1a. For the `hash` policy hash the client's address bytes WITHOUT the port.
uint64_t hash_bytes(std::string_view data);

// A seed from std::random_device (called once per balancer created, never per pick).
uint64_t random_seed();

std::unique_ptr<Balancer> make_balancer(BalancePolicy policy, uint64_t seed = random_seed());

// One balancer for several workers' routers, so round robin and weights hold across them
// (picks happen on new sessions only, so one lock is cheap).
struct SharedBalancer {
  std::mutex mu;
  std::unique_ptr<Balancer> balancer;  // guarded by mu
  uint64_t reloads = 0;                // reloads it reflects (workers apply the same sequence)
};
std::unique_ptr<Balancer> make_round_robin();

}  // namespace stickyd
