// Shared bits of the libFuzzer targets: an invariant check that names what failed, then traps
// (libFuzzer reports a trap as a crash and saves the input).
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                   \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n", #cond, __FILE__,       \
                   __LINE__);                                                              \
      __builtin_trap();                                                                    \
    }                                                                                      \
  } while (0)

namespace fuzz {

// Wall clock seen by stickyd's code (HAProxy cookie dates use time()): targets that include
// FUZZ_DEFINE_CLOCK replace libc's time() with this, so every run of an input is the same.
inline int64_t g_wall_clock_s = 1700000000;

// FNV-1a: a deterministic source of "random" choices derived from the input itself, so the
// fuzzer can steer them and every run of one input does the same thing.
inline uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// True when `inner` lies entirely inside `outer` (same buffer).
inline bool within(std::string_view inner, std::string_view outer) {
  if (inner.empty()) return true;
  const char* b = outer.data();
  const char* e = outer.data() + outer.size();
  return inner.data() >= b && inner.data() + inner.size() <= e;
}

}  // namespace fuzz

// Defines time() for the whole binary (overriding libc's and the sanitizers' weak interceptor).
#define FUZZ_DEFINE_CLOCK                                          \
  extern "C" time_t time(time_t* out) {                            \
    const time_t now = static_cast<time_t>(fuzz::g_wall_clock_s);  \
    if (out != nullptr) *out = now;                                \
    return now;                                                    \
  }
