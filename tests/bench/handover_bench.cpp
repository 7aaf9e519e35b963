// handover_bench: what a SIGUSR2 upgrade costs for a big affinity table: the old process's
// snapshot (walk + encode), the new process's decode, and the import into its table. The new
// process does the decode and import before it says ready; the old one serves meanwhile (its
// snapshot is built on the libuv thread pool), so
// these figures are how long an upgrade takes, not a pause anyone sees.
//   build/tests/bench/handover_bench [sessions=1000000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "stickyd/affinity.hpp"
#include "stickyd/handover.hpp"

using namespace stickyd;
using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const std::vector<std::string> names = {"node-1", "node-2", "node-3", "node-4"};
  AffinityTable old_table(n);
  char sid[21];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(sid, sizeof sid, "%020zx", i * 2654435761u);  // 20 chars like Socket.IO's
    old_table.learn(sid, static_cast<uint16_t>(i % names.size()), 60000, 0);
  }

  auto t0 = Clock::now();
  std::string body, snapshot;
  size_t count = 0;
  old_table.for_each(
      [&](std::string_view s, uint16_t b, int64_t ttl, bool) {
        append_handover_entry(body, 'e', s, names[b], ttl);
        ++count;
      },
      1000);
  append_handover_header(snapshot, count);
  snapshot += body;
  append_handover_end(snapshot);
  double encode_ms = ms_since(t0);

  auto t1 = Clock::now();
  HandoverDecoder d(HandoverDecoder::Side::New, n);
  std::vector<HandoverRecord> entries;
  entries.reserve(count);
  HandoverRecord r;
  for (size_t off = 0; off < snapshot.size(); off += 65536) {  // as read(2) gives it
    d.feed(std::string_view(snapshot).substr(off, 65536));
    while (d.next(r) == HandoverDecoder::Status::Record)
      if (r.kind == HandoverRecord::Kind::Entry) entries.push_back(r);
  }
  double decode_ms = ms_since(t1);

  auto t2 = Clock::now();
  AffinityTable new_table(n);
  for (const HandoverRecord& e : entries)
    new_table.learn(e.sid, static_cast<uint16_t>(e.backend.back() - '1'), e.ttl_ms, 1000);
  double import_ms = ms_since(t2);

  std::printf("sessions %zu, snapshot %.1f MB (%.0f bytes/session)\n", count,
              snapshot.size() / 1e6, static_cast<double>(snapshot.size()) / static_cast<double>(count));
  std::printf("old process: walk + encode %.0f ms (on the thread pool: its loops keep serving)\n", encode_ms);
  std::printf("new process: decode %.0f ms, import %.0f ms (before it says ready)\n", decode_ms, import_ms);
  std::printf("imported %zu of %zu: %s\n", new_table.size(), n, new_table.size() == n ? "ok" : "MISMATCH");
  return new_table.size() == n ? 0 : 1;
}
