// Affinity table cost at scale: memory per session and lookup/refresh time.
//   build/tests/bench/affinity_bench [sessions]      (default 1,000,000)
// Prints figures; asserts nothing (benchmarks are not tests).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "stickyd/affinity.hpp"

namespace {
long rss_kib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4;  // 4 KiB pages
}

std::string base64id(std::mt19937_64& rng) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string s(20, 'A');
  for (char& c : s) c = alphabet[rng() % 64];
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  std::mt19937_64 rng(42);
  std::vector<std::string> sids;
  sids.reserve(n);
  for (size_t i = 0; i < n; ++i) sids.push_back(base64id(rng));

  long before = rss_kib();
  stickyd::AffinityTable table(n);
  auto t0 = std::chrono::steady_clock::now();
  // The slowest single learn shows whether growing the table ever stalls the event loop.
  double worst_learn_s = 0;
  for (size_t i = 0; i < n; ++i) {
    auto op = std::chrono::steady_clock::now();
    table.learn(sids[i], static_cast<uint16_t>(i % 3), 60000, 0);
    worst_learn_s = std::max(worst_learn_s, seconds_since(op));
  }
  double learn_s = seconds_since(t0);
  long after = rss_kib();

  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = rng() % n;
  t0 = std::chrono::steady_clock::now();
  size_t hits = 0;
  for (size_t i = 0; i < n; ++i) hits += table.touch(sids[order[i]], 1000).has_value();
  double touch_s = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  size_t expired = 0;
  while (size_t k = table.expire(10'000'000, 100000)) expired += k;
  double expire_s = seconds_since(t0);

  std::printf("sessions                 %zu\n", n);
  std::printf("table RSS                %.1f MiB (%.0f bytes/session measured, %zu computed)\n",
              static_cast<double>(after - before) / 1024.0,
              static_cast<double>(after - before) * 1024.0 / static_cast<double>(n),
              stickyd::AffinityTable::bytes_per_entry(20));
  std::printf("learn                    %.0f ns/op\n", learn_s * 1e9 / static_cast<double>(n));
  std::printf("slowest single learn      %.1f us (index growth; %zu shards)\n", worst_learn_s * 1e6,
              table.shard_count());
  std::printf("lookup+refresh (random)  %.0f ns/op (%zu hits)\n",
              touch_s * 1e9 / static_cast<double>(n), hits);
  std::printf("expire all               %.0f ns/op (%zu entries)\n",
              expire_s * 1e9 / static_cast<double>(n), expired);
  return 0;
}
