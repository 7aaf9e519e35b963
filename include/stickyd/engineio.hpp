// Engine.IO protocol facts the router needs: the open packet of a handshake response, and
// which session ids are safe to reflect into headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stickyd {

struct OpenPacket {
  std::string sid;
  std::vector<std::string> upgrades;
  int64_t ping_interval_ms = -1;  // -1 when absent
  int64_t ping_timeout_ms = -1;
  int64_t max_payload = -1;
};

// Parses the open packet at the start of a polling handshake response body:
//   EIO4        0{"sid":...}                 (further packets after 0x1E are ignored)
//   EIO3 text   <len>:0{"sid":...}[<len>:<packet>...]
//   EIO3 binary 0x00 <len digits as bytes 0-9> 0xFF '0' {"sid":...} ...
// nullopt for anything else (wrong packet type, bad length prefix, malformed JSON, no sid).
std::optional<OpenPacket> parse_open_packet(std::string_view body);

// Same, for the payload of the first websocket frame of a websocket-first handshake.
std::optional<OpenPacket> parse_open_packet_ws(std::string_view frame_payload);

// A sid we are willing to write into a Set-Cookie or a log: 1..256 bytes of RFC 6265
// cookie-octets (the default base64id alphabet [A-Za-z0-9_-] is a subset).
bool is_reflectable_sid(std::string_view sid);

}  // namespace stickyd
