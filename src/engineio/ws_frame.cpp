#include "stickyd/ws_frame.hpp"

namespace stickyd {

WsFrameScan scan_first_ws_frame(std::string_view bytes, uint64_t max_payload) {
  WsFrameScan r;
  if (bytes.size() < 2) return r;
  auto b0 = static_cast<uint8_t>(bytes[0]);
  auto b1 = static_cast<uint8_t>(bytes[1]);
  bool fin = b0 & 0x80;
  bool rsv = b0 & 0x70;  // RSV1 = permessage-deflate: not readable here
  uint8_t opcode = b0 & 0x0f;
  bool masked = b1 & 0x80;  // servers never mask
  if (!fin || rsv || opcode != 0x1 || masked) {
    r.status = WsFrameScan::NotText;
    return r;
  }
  uint64_t len = b1 & 0x7f;
  size_t header = 2;
  if (len == 126) {
    if (bytes.size() < 4) return r;
    len = (uint64_t{static_cast<uint8_t>(bytes[2])} << 8) | static_cast<uint8_t>(bytes[3]);
    header = 4;
  } else if (len == 127) {
    if (bytes.size() < 10) return r;
    len = 0;
    for (int i = 2; i < 10; ++i) len = (len << 8) | static_cast<uint8_t>(bytes[i]);
    header = 10;
  }
  if (len > max_payload) {
    r.status = WsFrameScan::NotText;
    return r;
  }
  if (bytes.size() - header < len) return r;
  r.status = WsFrameScan::Text;
  r.payload = bytes.substr(header, static_cast<size_t>(len));
  return r;
}

}  // namespace stickyd
