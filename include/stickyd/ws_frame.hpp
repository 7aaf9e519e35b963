// Just enough of RFC 6455 to read the first frame a server sends after its 101: on a
// websocket-first Engine.IO handshake that frame is the open packet carrying the new sid.
#pragma once

#include <cstdint>
#include <string_view>

namespace stickyd {

struct WsFrameScan {
  enum Status { NeedMore, Text, NotText } status = NeedMore;
  std::string_view payload;  // valid when status == Text
};

// Scans the first frame at the start of `bytes`. `Text` only for a final, unmasked,
// uncompressed text frame whose payload is complete and at most `max_payload` bytes; anything
// else that can already be judged is `NotText`.
WsFrameScan scan_first_ws_frame(std::string_view bytes, uint64_t max_payload);

}  // namespace stickyd
