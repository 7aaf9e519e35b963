// Cookie header parsing and Set-Cookie serialisation, byte-compatible with the `cookie` npm
// package 0.7 (what engine.io uses). Input comes from the network: every index is checked.

#include "stickyd/cookie.hpp"

#include <time.h>

#include <cstdint>
#include <cstdio>

namespace stickyd {

namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the %XX at s[i] (s[i] == '%'); -1 when it is not a valid escape.
int escape_at(std::string_view s, size_t i) {
  if (i >= s.size() || s.size() - i < 3) return -1;  // need s[i+1] and s[i+2]
  const int hi = hex_value(s[i + 1]);
  const int lo = hex_value(s[i + 2]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

// JavaScript decodeURIComponent over a byte string: every %XX is decoded, multi-byte escapes
// must form well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF); anything else makes
// the whole decode fail (URIError), as in JS. Unescaped bytes are copied as they are.
std::optional<std::string> decode_uri_component(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      ++i;
      continue;
    }
    const int b0 = escape_at(s, i);
    if (b0 < 0) return std::nullopt;
    i += 3;
    if (b0 < 0x80) {
      out.push_back(static_cast<char>(b0));
      continue;
    }
    int extra = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
      extra = 1;
      cp = static_cast<uint32_t>(b0 & 0x1F);
      min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2;
      cp = static_cast<uint32_t>(b0 & 0x0F);
      min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      extra = 3;
      cp = static_cast<uint32_t>(b0 & 0x07);
      min = 0x10000;
    } else {
      return std::nullopt;  // continuation byte or 0xF8..0xFF as a lead
    }
    std::string bytes(1, static_cast<char>(b0));
    for (int k = 0; k < extra; ++k) {
      if (i >= s.size() || s[i] != '%') return std::nullopt;
      const int b = escape_at(s, i);
      if (b < 0 || (b & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | static_cast<uint32_t>(b & 0x3F);
      bytes.push_back(static_cast<char>(b));
      i += 3;
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
    out += bytes;
  }
  return out;
}

bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> find_cookie(std::string_view header, std::string_view name) {
  // Same walk as the `cookie` package's parse(): pairs are separated by ';', a segment without
  // '=' is skipped, name and value are trimmed of SP/HTAB, the first pair of a name wins.
  if (header.size() < 2) return std::nullopt;
  size_t index = 0;
  while (index < header.size()) {
    size_t end = header.find(';', index);
    if (end == std::string_view::npos) end = header.size();
    const std::string_view segment = header.substr(index, end - index);
    index = end + 1;
    const size_t eq = segment.find('=');
    if (eq == std::string_view::npos) continue;

    std::string_view key = segment.substr(0, eq);
    while (!key.empty() && is_ows(key.front())) key.remove_prefix(1);
    while (!key.empty() && is_ows(key.back())) key.remove_suffix(1);
    if (key != name) continue;

    std::string_view value = segment.substr(eq + 1);
    while (!value.empty() && is_ows(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_ows(value.back())) value.remove_suffix(1);
    if (!value.empty() && value.front() == '"' && value.back() == '"') {
      // A lone '"' is both the opening and the closing quote: the package yields "".
      value = value.size() >= 2 ? value.substr(1, value.size() - 2) : std::string_view();
    }
    if (value.find('%') == std::string_view::npos) return std::string(value);
    if (auto decoded = decode_uri_component(value)) return decoded;
    return std::string(value);  // tryDecode: an invalid escape leaves the value as sent
  }
  return std::nullopt;
}

std::optional<CookiePair> parse_set_cookie_pair(std::string_view set_cookie) {
  const size_t semi = set_cookie.find(';');
  const std::string_view pair = set_cookie.substr(0, semi);
  const size_t eq = pair.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  std::string_view name = pair.substr(0, eq);
  std::string_view value = pair.substr(eq + 1);
  while (!name.empty() && is_ows(name.front())) name.remove_prefix(1);
  while (!name.empty() && is_ows(name.back())) name.remove_suffix(1);
  while (!value.empty() && is_ows(value.front())) value.remove_prefix(1);
  while (!value.empty() && is_ows(value.back())) value.remove_suffix(1);
  if (name.empty()) return std::nullopt;
  return CookiePair{name, value};
}

namespace {

// Byte classes, one table lookup per byte (cookie values and sids are checked per handshake).
struct ByteClasses {
  bool cookie_octet[256] = {};
  bool uri_unreserved[256] = {};  // what encodeURIComponent leaves as it is
  constexpr ByteClasses() {
    for (int c = 0; c < 256; ++c) {
      cookie_octet[c] = c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
                        (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
      uri_unreserved[c] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                          c == '!' || c == '~' || c == '*' || c == '\'' || c == '(' || c == ')';
    }
  }
};
constexpr ByteClasses kBytes;

bool is_uri_unreserved(std::string_view value) {
  for (char ch : value)
    if (!kBytes.uri_unreserved[static_cast<unsigned char>(ch)]) return false;
  return true;
}

}  // namespace

bool is_cookie_octets(std::string_view value) {
  for (char ch : value)
    if (!kBytes.cookie_octet[static_cast<unsigned char>(ch)]) return false;
  return true;
}

std::string encode_uri_component(std::string_view value) {
  static const char kHex[] = "0123456789ABCDEF";
  if (is_uri_unreserved(value)) return std::string(value);
  std::string out;
  out.reserve(value.size());
  for (char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (kBytes.uri_unreserved[c]) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0F]);
    }
  }
  return out;
}

std::optional<std::string> serialize_set_cookie(const CookieConfig& cfg, std::string_view value) {
  if (!is_token(cfg.name)) return std::nullopt;
  std::string storage;  // only when encoding changes the value (sids never need it)
  std::string_view encoded = value;
  if (cfg.encode == CookieEncode::Uri && !is_uri_unreserved(value)) {
    storage = encode_uri_component(value);
    encoded = storage;
  }
  if (!is_cookie_octets(encoded)) return std::nullopt;

  std::string out;
  out.reserve(cfg.name.size() + encoded.size() + 128);
  out += cfg.name;
  out += '=';
  out += encoded;
  if (cfg.max_age) {
    out += "; Max-Age=";
    out += std::to_string(*cfg.max_age);
  }
  if (!cfg.domain.empty()) {
    out += "; Domain=";
    out += cfg.domain;
  }
  if (cfg.path && !cfg.path->empty()) {
    out += "; Path=";
    out += *cfg.path;
  }
  if (cfg.expires) {
    out += "; Expires=";
    out += http_date(*cfg.expires);
  }
  if (cfg.http_only) out += "; HttpOnly";
  if (cfg.secure) out += "; Secure";
  if (cfg.partitioned) out += "; Partitioned";
  if (!cfg.priority.empty()) {
    out += "; Priority=";
    out += cfg.priority;
  }
  switch (cfg.same_site) {
    case SameSite::Strict:
      out += "; SameSite=Strict";
      break;
    case SameSite::Lax:
      out += "; SameSite=Lax";
      break;
    case SameSite::None:
      out += "; SameSite=None";
      break;
    case SameSite::Unset:
      break;
  }
  return out;
}

std::string http_date(int64_t unix_seconds) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  if (gmtime_r(&t, &tm) == nullptr || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
      tm.tm_mon > 11) {
    return "Thu, 01 Jan 1970 00:00:00 GMT";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04lld %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], static_cast<long long>(tm.tm_year) + 1900,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

}  // namespace stickyd
