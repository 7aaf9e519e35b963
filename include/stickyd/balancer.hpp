// Choice of a backend for requests that carry no known session (handshakes, unknown sids).
// Policies sit behind one interface so the router does not care which one is configured.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace stickyd {

struct BalanceCandidate {
  uint32_t weight = 1;  // 0 = takes no new sessions
  bool usable = true;   // false while marked down
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Index into `candidates` for a new session, or -1 when no candidate is usable.
  virtual int pick(std::span<const BalanceCandidate> candidates) = 0;
};

// Smooth weighted round robin (the nginx algorithm): with weights 5,1,1 the order is
// a a b a c a a, never bursts of one backend; equal weights give plain rotation.
class SmoothWeightedRoundRobin final : public Balancer {
 public:
  int pick(std::span<const BalanceCandidate> candidates) override;

 private:
  std::vector<int64_t> current_;
};

std::unique_ptr<Balancer> make_round_robin();

}  // namespace stickyd
