// Byte-level rewrites a persistence mode needs on the way through: the sid in a query
// string, a value in a Cookie header, the sid inside a handshake's open packet (with the
// EIO3 length prefix kept right) and a server websocket text frame.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace stickyd {

// `target` with the value of every `key` parameter replaced by `value` (percent-encoded as
// encodeURIComponent does). Other bytes are kept as they were.
std::string replace_query_param(std::string_view target, std::string_view key,
                                std::string_view value);
// The target without any `key` parameter (the `?` goes too when nothing is left).
std::string remove_query_param(std::string_view target, std::string_view key);

// A Cookie header with the value of every cookie called `name` passed through `edit`:
// returning nullopt removes that cookie, a string replaces its value. Pairs are re-joined
// with "; ". Returns the new header value (may be empty when every cookie was removed).
std::string edit_cookie_header(std::string_view header, std::string_view name,
                               const std::function<std::optional<std::string>(std::string_view)>& edit);

// Set-Cookie header value with its leading name=value's value replaced; attributes kept.
std::string replace_set_cookie_value(std::string_view set_cookie, std::string_view value);

// Handshake body with the open packet's sid `from` replaced by `to`: EIO4 text, EIO3 text
// (`<len>:` recomputed) or EIO3 binary (length digits recomputed). nullopt when the body is
// not an open packet carrying exactly that sid.
std::optional<std::string> replace_open_packet_sid(std::string_view body, std::string_view from,
                                                   std::string_view to);

// An unmasked, final server text frame carrying `payload`.
std::string server_text_frame(std::string_view payload);

}  // namespace stickyd
