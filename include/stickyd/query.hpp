// Request-target and query-string handling for routing. Mirrors how engine.io reads its
// query (URLSearchParams): `+` is a space, %XX is decoded, an invalid escape is kept
// literally, and the LAST occurrence of a repeated key is the one the backend (and so the
// routing) uses.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace stickyd {

struct RequestTarget {
  std::string_view path;   // before '?', e.g. "/socket.io/"
  std::string_view query;  // after '?', without it; empty when none
};
RequestTarget split_target(std::string_view target);

// Lenient percent-decoding as above. `plus_is_space` for query components.
std::string percent_decode(std::string_view in, bool plus_is_space);

// Decoded value of the last `key` in the query. "" when present with an empty value,
// nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view key);
// The same value still encoded (a view into `query`), and whether it needs decoding at all.
std::optional<std::string_view> query_param_raw(std::string_view query, std::string_view key);
bool query_needs_decoding(std::string_view raw);

// True when `path` is under the Engine.IO `prefix` (engine.io: url.slice(0, len) === path).
bool is_engineio_path(std::string_view path, std::string_view prefix);

}  // namespace stickyd
