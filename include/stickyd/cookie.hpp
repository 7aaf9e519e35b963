// Cookie parsing (request `Cookie`, response `Set-Cookie`) and Set-Cookie serialisation.
// Small and strict on purpose: these bytes come from the network and are fuzzed.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "stickyd/config.hpp"

namespace stickyd {

// Value of the first cookie called `name` in a `Cookie` header value ("a=1; io=xyz").
// Surrounding double quotes are removed and %XX escapes decoded like the `cookie` npm package
// (an invalid escape leaves the value as sent). nullopt when absent or the header is malformed
// around that pair.
std::optional<std::string> find_cookie(std::string_view cookie_header, std::string_view name);

// The leading name=value of a `Set-Cookie` header value ("io=abc; Path=/" -> {io, abc}).
struct CookiePair {
  std::string_view name;
  std::string_view value;
};
std::optional<CookiePair> parse_set_cookie_pair(std::string_view set_cookie);

// RFC 6265 cookie-octet: printable US-ASCII except space, DQUOTE, comma, semicolon, backslash.
bool is_cookie_octets(std::string_view value);

// encodeURIComponent, as the `cookie` package's default `encode`.
std::string encode_uri_component(std::string_view value);

// `Set-Cookie` header value for `value` under `cfg`, attribute order and spelling exactly as
// the `cookie` npm package (used by engine.io) writes them:
//   name=value; Max-Age=N; Domain=d; Path=p; Expires=<IMF-fixdate>; HttpOnly; Secure;
//   Partitioned; Priority=High; SameSite=Lax
// nullopt when the encoded value would not be cookie-octets (never reflect unsafe bytes).
std::optional<std::string> serialize_set_cookie(const CookieConfig& cfg, std::string_view value);

// IMF-fixdate ("Wed, 21 Oct 2026 07:28:00 GMT") for a unix time, as Date#toUTCString.
std::string http_date(int64_t unix_seconds);

}  // namespace stickyd
