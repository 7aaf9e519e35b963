// fuzz_discovery: what stickyd does with DNS answers (c-ares parses the wire format; the rest
// is ours). The input is a sequence of answers, each a list of records (SRV target, port,
// IPv4 address). Invariants: names derived from identities are valid backend names and
// distinct for distinct identities; a set never holds more than `max`; the order of records
// in an answer never changes the set (replicas agree); a member is present exactly when the
// last answer had it; drained members keep their identity and name.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "stickyd/discovery.hpp"

using namespace stickyd;

namespace {

bool valid_name(const std::string& n) {
  if (n.empty()) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == '_'))
      return false;
  return true;
}

std::vector<std::vector<DnsTarget>> answers_of(std::string_view in) {
  std::vector<std::vector<DnsTarget>> answers(1);
  size_t i = 0;
  while (i + 4 <= in.size() && answers.size() < 16) {
    unsigned char op = static_cast<unsigned char>(in[i]);
    if (op == 0xff) {  // next answer
      answers.emplace_back();
      ++i;
      continue;
    }
    // One record: a host label from a tiny alphabet, a port, the last address byte.
    DnsTarget t;
    size_t len = 1 + op % 6;
    for (size_t k = 0; k < len && i + 1 + k < in.size(); ++k)
      t.host += "ab-.9_"[static_cast<unsigned char>(in[i + 1 + k]) % 6];
    i += 1 + len;
    if (i + 2 > in.size()) break;
    t.port = static_cast<uint16_t>(1 + static_cast<unsigned char>(in[i]) % 4);
    std::string ip = "127.0.0." + std::to_string(1 + static_cast<unsigned char>(in[i + 1]) % 8);
    i += 2;
    FUZZ_CHECK(!parse_socket_address(ip + ":" + std::to_string(t.port), t.address, false));
    answers.back().push_back(std::move(t));
  }
  return answers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  DiscoverConfig d;
  d.type = data[0] & 1 ? DiscoverType::SRV : DiscoverType::A;
  d.max = 1 + (data[0] >> 1) % 8;
  DiscoveredSet forward, backward;
  int64_t now = 0;
  for (std::vector<DnsTarget>& answer : answers_of(in)) {
    if (answer.empty()) continue;  // a failed/empty lookup is not applied (last good set kept)
    now += 1000;
    forward.apply(d, answer, now);
    std::reverse(answer.begin(), answer.end());
    backward.apply(d, answer, now);
    FUZZ_CHECK(forward.members.size() <= d.max);
    std::set<std::string> ids, names;
    for (const DnsTarget& t : answer) ids.insert(discovered_identity(d.type, t));
    for (const auto& [identity, m] : forward.members) {
      FUZZ_CHECK(m.identity == identity);
      FUZZ_CHECK(m.name == discovered_name(identity));
      FUZZ_CHECK(valid_name(m.name));
      FUZZ_CHECK(names.insert(m.name).second);
      FUZZ_CHECK(m.present == (ids.count(identity) > 0));
      const auto& other = backward.members.at(identity);  // order never matters
      FUZZ_CHECK(other.present == m.present);
      FUZZ_CHECK(other.target.address.text == m.target.address.text || d.type == DiscoverType::SRV);
    }
    FUZZ_CHECK(backward.members.size() == forward.members.size());
  }
  return 0;
}
