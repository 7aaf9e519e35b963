#include "stickyd/balancer.hpp"

namespace stickyd {

int SmoothWeightedRoundRobin::pick(std::span<const BalanceCandidate> candidates) {
  if (current_.size() != candidates.size()) current_.assign(candidates.size(), 0);
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const BalanceCandidate& c = candidates[i];
    if (!c.usable || c.weight == 0) continue;
    current_[i] += c.weight;
    total += c.weight;
    if (best < 0 || current_[i] > current_[best]) best = static_cast<int>(i);
  }
  if (best >= 0) current_[best] -= total;
  return best;
}

std::unique_ptr<Balancer> make_round_robin() { return std::make_unique<SmoothWeightedRoundRobin>(); }

}  // namespace stickyd
