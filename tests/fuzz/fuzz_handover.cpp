// fuzz_handover: the session hand-over stream a new process reads from the old one (and the
// old one from the new). Invariants: no input crashes the decoder or makes it keep more than
// a line (bounded); splitting the input differently never changes the records or the error;
// every record re-encodes to a line that decodes to the same record; once in error it stays
// there; a snapshot never yields more entries than max_entries.
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "stickyd/handover.hpp"

using namespace stickyd;

namespace {

struct Run {
  std::vector<HandoverRecord> records;
  std::string error;
};

Run decode(HandoverDecoder::Side side, std::string_view in, size_t step, size_t max_entries) {
  HandoverDecoder d(side, max_entries);
  Run run;
  size_t entries = 0;
  for (size_t i = 0; i < in.size() || i == 0; i += step) {
    d.feed(in.substr(i < in.size() ? i : in.size(), step));
    HandoverRecord r;
    for (;;) {
      HandoverDecoder::Status st = d.next(r);
      FUZZ_CHECK(d.buffered() <= kHandoverMaxLine + step + 1);
      if (st == HandoverDecoder::Status::NeedMore) break;
      if (st == HandoverDecoder::Status::Error) {
        run.error = d.error();
        FUZZ_CHECK(d.next(r) == HandoverDecoder::Status::Error);
        return run;
      }
      if (r.kind == HandoverRecord::Kind::Entry) FUZZ_CHECK(++entries <= max_entries);
      FUZZ_CHECK(r.sid.size() <= kHandoverMaxField && r.backend.size() <= kHandoverMaxField);
      run.records.push_back(r);
    }
    if (in.empty()) break;
  }
  return run;
}

bool same(const HandoverRecord& a, const HandoverRecord& b) {
  return a.kind == b.kind && a.sid == b.sid && a.backend == b.backend && a.ttl_ms == b.ttl_ms &&
         a.pid == b.pid;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto side = (data[0] & 1) ? HandoverDecoder::Side::Old : HandoverDecoder::Side::New;
  size_t max_entries = data[0] >> 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  Run whole = decode(side, in, in.size() ? in.size() : 1, max_entries);
  Run bytewise = decode(side, in, 1, max_entries);
  FUZZ_CHECK(whole.error == bytewise.error);
  FUZZ_CHECK(whole.records.size() == bytewise.records.size());
  for (size_t i = 0; i < whole.records.size(); ++i) FUZZ_CHECK(same(whole.records[i], bytewise.records[i]));
  // Deltas re-encode to what decodes to the same thing.
  for (const HandoverRecord& r : whole.records) {
    if (r.kind != HandoverRecord::Kind::Learn && r.kind != HandoverRecord::Kind::Forget) continue;
    std::string s;
    append_handover_header(s, 0);
    append_handover_end(s);
    if (r.kind == HandoverRecord::Kind::Learn) append_handover_entry(s, '+', r.sid, r.backend, r.ttl_ms);
    else append_handover_forget(s, r.sid);
    Run again = decode(HandoverDecoder::Side::New, s, s.size(), 0);
    FUZZ_CHECK(again.error.empty());
    FUZZ_CHECK(again.records.size() == 2);
    FUZZ_CHECK(same(again.records[1], r));
  }
  return 0;
}
