// fuzz_open_packet: parse_open_packet (EIO4, EIO3 text, EIO3 binary), parse_open_packet_ws,
// replace_open_packet_sid (the sid tagging of a handshake response) and scan_first_ws_frame,
// chained the way ClientConn::finish_handshake_hold / finish_upgrade_hold chain them.
//
// Input: a polling handshake body, or the bytes a backend sends after its 101 (one input is
// tried as both).
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "stickyd/engineio.hpp"
#include "stickyd/rewrite.hpp"
#include "stickyd/ws_frame.hpp"

using namespace stickyd;

namespace {

void check_packet(const std::optional<OpenPacket>& p) {
  if (!p) return;
  FUZZ_CHECK(!p->sid.empty());
  FUZZ_CHECK(p->ping_interval_ms >= -1 && p->ping_timeout_ms >= -1 && p->max_payload >= -1);
}

bool same_except_sid(const OpenPacket& a, const OpenPacket& b) {
  return a.upgrades == b.upgrades && a.ping_interval_ms == b.ping_interval_ms &&
         a.ping_timeout_ms == b.ping_timeout_ms && a.max_payload == b.max_payload;
}

// The tagging step: `body` parsed with `open`; the proxy swaps in "<value>.<sid>".
void check_tagging(std::string_view body, const OpenPacket& open, bool ws) {
  if (!is_reflectable_sid(open.sid)) return;  // the proxy never tags those
  const std::string tagged = "n2." + open.sid;
  std::optional<std::string> out = replace_open_packet_sid(body, open.sid, tagged);
  if (!out) return;  // logged and forwarded untagged
  std::optional<OpenPacket> again = ws ? parse_open_packet_ws(*out) : parse_open_packet(*out);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->sid == tagged);
  FUZZ_CHECK(same_except_sid(open, *again));
  // And back (length prefixes come out canonical, so compare what a client would read).
  std::optional<std::string> back = replace_open_packet_sid(*out, tagged, open.sid);
  FUZZ_CHECK(back.has_value());
  std::optional<OpenPacket> orig = ws ? parse_open_packet_ws(*back) : parse_open_packet(*back);
  FUZZ_CHECK(orig && orig->sid == open.sid && same_except_sid(open, *orig));
}

void check_scan(std::string_view bytes, uint64_t max) {
  WsFrameScan s = scan_first_ws_frame(bytes, max);
  if (s.status == WsFrameScan::NeedMore) {
    // Only a prefix can need more: at most 10 header bytes + the payload length.
    FUZZ_CHECK(bytes.size() < 10 || bytes.size() - 10 < max);
    return;
  }
  if (s.status != WsFrameScan::Text) return;
  FUZZ_CHECK(fuzz::within(s.payload, bytes));
  FUZZ_CHECK(s.payload.size() <= max);
  const size_t header = static_cast<size_t>(s.payload.data() - bytes.data());
  FUZZ_CHECK(header == 2 || header == 4 || header == 10);
  FUZZ_CHECK((static_cast<uint8_t>(bytes[0]) & 0x0F) == 1);

  // finish_upgrade_hold: open packet in the frame -> tagged -> re-framed.
  std::optional<OpenPacket> open = parse_open_packet_ws(s.payload);
  check_packet(open);
  if (!open) return;
  check_tagging(s.payload, *open, true);
  if (!is_reflectable_sid(open->sid)) return;
  std::optional<std::string> p = replace_open_packet_sid(s.payload, open->sid, "n1." + open->sid);
  if (!p) return;
  std::string frame = server_text_frame(*p);
  frame.append(bytes.substr(header + s.payload.size()));  // what followed the frame
  WsFrameScan r = scan_first_ws_frame(frame, std::numeric_limits<uint64_t>::max());
  FUZZ_CHECK(r.status == WsFrameScan::Text && r.payload == *p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const uint64_t h = fuzz::fnv1a(body);

  // ---- polling handshake body
  std::optional<OpenPacket> open = parse_open_packet(body);
  check_packet(open);
  if (open) check_tagging(body, *open, false);

  // ---- the same bytes as a websocket frame payload
  std::optional<OpenPacket> ws = parse_open_packet_ws(body);
  check_packet(ws);
  if (ws) check_tagging(body, *ws, true);

  // ---- replace_open_packet_sid with ids the body may not carry
  (void)replace_open_packet_sid(body, "abc", "n1.abc");
  (void)replace_open_packet_sid(body, "5_S2AZdCI1bklnExAAAk", "");
  if (open && open->sid.size() > 1)
    (void)replace_open_packet_sid(body, std::string_view(open->sid).substr(1), "x");

  // ---- the bytes after a 101
  check_scan(body, 16 * 1024);
  check_scan(body, h % 300);
  check_scan(body, std::numeric_limits<uint64_t>::max());
  return 0;
}
