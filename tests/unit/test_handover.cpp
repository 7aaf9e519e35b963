#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "stickyd/handover.hpp"
#include "stickyd/upgrade.hpp"

using stickyd::HandoverDecoder;
using stickyd::HandoverRecord;
using Kind = stickyd::HandoverRecord::Kind;

namespace {

struct Decoded {
  std::vector<HandoverRecord> records;
  std::string error;
};

// Feeds `bytes` in pieces of `step` and collects every record until an error.
Decoded decode(HandoverDecoder::Side side, const std::string& bytes, size_t step = 0,
               size_t max_entries = 1000) {
  HandoverDecoder d(side, max_entries);
  Decoded out;
  if (step == 0) step = bytes.size() ? bytes.size() : 1;
  for (size_t i = 0; i <= bytes.size(); i += step) {
    d.feed(std::string_view(bytes).substr(i, step));
    HandoverRecord r;
    for (;;) {
      HandoverDecoder::Status st = d.next(r);
      if (st == HandoverDecoder::Status::NeedMore) break;
      if (st == HandoverDecoder::Status::Error) {
        out.error = d.error();
        return out;
      }
      out.records.push_back(r);
    }
  }
  return out;
}

std::string snapshot(const std::vector<std::tuple<std::string, std::string, int64_t>>& entries) {
  std::string s;
  stickyd::append_handover_header(s, entries.size());
  for (const auto& [sid, backend, ttl] : entries) stickyd::append_handover_entry(s, 'e', sid, backend, ttl);
  stickyd::append_handover_end(s);
  return s;
}

}  // namespace

TEST_CASE("handover: a snapshot and deltas round-trip, whatever the read sizes") {
  std::string odd_sid("a b%c\n\x01\xff=;", 10);
  std::string s = snapshot({{"Ab3_-x", "node-1", 59000}, {odd_sid, "n 2", 0}, {"s3", "node-1", 4294967295}});
  stickyd::append_handover_entry(s, '+', "late", "node-2", 120000);
  stickyd::append_handover_forget(s, odd_sid);
  for (size_t step : {size_t{0}, size_t{1}, size_t{3}, size_t{64}}) {
    CAPTURE(step);
    Decoded d = decode(HandoverDecoder::Side::New, s, step);
    REQUIRE(d.error.empty());
    REQUIRE(d.records.size() == 6);
    CHECK(d.records[0].kind == Kind::Entry);
    CHECK(d.records[0].sid == "Ab3_-x");
    CHECK(d.records[0].backend == "node-1");
    CHECK(d.records[0].ttl_ms == 59000);
    CHECK(d.records[1].sid == odd_sid);
    CHECK(d.records[1].backend == "n 2");
    CHECK(d.records[2].ttl_ms == 4294967295);
    CHECK(d.records[3].kind == Kind::SnapshotEnd);
    CHECK(d.records[4].kind == Kind::Learn);
    CHECK(d.records[4].sid == "late");
    CHECK(d.records[5].kind == Kind::Forget);
    CHECK(d.records[5].sid == odd_sid);
  }
  // Nothing in a line but printable ASCII: a sid cannot break the framing.
  for (char c : s) CHECK((c == '\n' || (c >= ' ' && c <= '~')));
}

TEST_CASE("handover: the old side reads ready, then deltas") {
  std::string s;
  stickyd::append_handover_ready(s, 4242);
  stickyd::append_handover_entry(s, '+', "x", "b", 5);
  Decoded d = decode(HandoverDecoder::Side::Old, s, 2);
  REQUIRE(d.error.empty());
  REQUIRE(d.records.size() == 2);
  CHECK(d.records[0].kind == Kind::Ready);
  CHECK(d.records[0].pid == 4242);
  CHECK(d.records[1].kind == Kind::Learn);
  CHECK(decode(HandoverDecoder::Side::Old, "+ x b 5\n").error == "line 1: expected 'ready <pid>'");
  CHECK(!decode(HandoverDecoder::Side::Old, "ready 0\n").error.empty());
  CHECK(!decode(HandoverDecoder::Side::Old, "ready -3\n").error.empty());
}

TEST_CASE("handover: a malformed or foreign stream is refused with its line") {
  struct Case {
    std::string in;
    std::string error;
  };
  const Case cases[] = {
      {"stickyd-affinity 2 0\nend\n", "line 1: unsupported version 2"},
      {"haproxy-table 1 0\nend\n", "line 1: not a stickyd affinity hand-over"},
      {"stickyd-affinity 1 2\ne a b 1\nend\n", "line 3: 1 announced entries missing"},
      {"stickyd-affinity 1 1\ne a b 1\ne c d 1\nend\n", "line 3: more entries than announced"},
      {"stickyd-affinity 1 1\ne a b -1\nend\n", "line 2: bad ttl"},
      {"stickyd-affinity 1 1\ne a b 4294967296\nend\n", "line 2: bad ttl"},
      {"stickyd-affinity 1 1\ne a b 007\nend\n", "line 2: bad ttl"},
      {"stickyd-affinity 1 1\ne a%4 b 1\nend\n", "line 2: bad sid"},
      {"stickyd-affinity 1 1\ne a%zz b 1\nend\n", "line 2: bad sid"},
      {"stickyd-affinity 1 1\ne a%41 b\xff 1\nend\n", "line 2: bad backend name"},
      {"stickyd-affinity 1 1\ne a  b 1\nend\n", "line 2: malformed record"},
      {"stickyd-affinity 1 1\ne a b 1 extra\nend\n", "line 2: malformed record"},
      {"stickyd-affinity 1 1\n+ a b 1\nend\n", "line 2: expected an entry"},
      {"stickyd-affinity 1 0\nend\n* a\n", "line 3: expected '+' or '-'"},
      {"stickyd-affinity 1 0\nend\n- \n", "line 3: malformed record"},
      {"stickyd-affinity 1 1001\n", "line 1: 1001 entries, more than max_sessions (1000)"},
      {"stickyd-affinity 1 99999999999999999999999\n", "line 1: bad entry count"},
      {"\n", "line 1: malformed record"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.in);
    CHECK(decode(HandoverDecoder::Side::New, c.in).error == c.error);
    CHECK(decode(HandoverDecoder::Side::New, c.in, 1).error == c.error);
  }
  // A sid longer than the format's bound; a line longer than any valid one, even unfinished.
  CHECK(decode(HandoverDecoder::Side::New,
               "stickyd-affinity 1 1\ne " + std::string(257, 'a') + " b 1\nend\n")
            .error == "line 2: bad sid");
  CHECK(decode(HandoverDecoder::Side::New, "stickyd-affinity 1 1\ne " + std::string(5000, 'a'), 100)
            .error == "line 2: line too long");
}

TEST_CASE("handover: after an error the decoder accepts nothing more") {
  HandoverDecoder d(HandoverDecoder::Side::New, 10);
  d.feed("nonsense\nstickyd-affinity 1 0\nend\n");
  HandoverRecord r;
  CHECK(d.next(r) == HandoverDecoder::Status::Error);
  d.feed("stickyd-affinity 1 0\nend\n");
  CHECK(d.next(r) == HandoverDecoder::Status::Error);
  CHECK(d.buffered() == 0);
}

TEST_CASE("handover: the inherited-sockets variable") {
  stickyd::InheritedSockets in;
  std::string v;
  stickyd::append_escaped(v, stickyd::listen_label("127.0.0.1:80"));
  v += "=4,5;";
  stickyd::append_escaped(v, stickyd::admin_label("[::1]:9000"));
  v += "=6";
  CHECK(in.parse(v));
  CHECK(!in.empty());
  CHECK(!in.parse("listen=4,"));
  CHECK(!in.parse("listen=-1"));
  CHECK(!in.parse("listen"));
  CHECK(!in.parse("li%zz=4"));
  CHECK(in.parse(""));
  CHECK(in.empty());
}
