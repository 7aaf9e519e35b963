// Values: the Loader's errors, positions and typed getters, the checks on scalar values, and
// the public parsers for durations, sizes and socket addresses.

#include "loader.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <map>

namespace stickyd {

int SocketAddress::port() const {
  if (storage.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  }
  if (storage.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  }
  return -1;
}

std::string ConfigError::to_string() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

namespace config_detail {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) { return lower(a) == lower(b); }

// Non-empty run of ASCII digits -> value, false on overflow.
bool parse_u64_digits(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Dates for cookie `expires`.
namespace {


int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && is_leap(y)) return 29;
  return kDays[m - 1];
}

bool fixed_number(std::string_view s, size_t pos, size_t len, unsigned& out) {
  if (pos + len > s.size()) return false;
  unsigned v = 0;
  for (size_t i = pos; i < pos + len; ++i) {
    if (!is_digit(s[i])) return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  out = v;
  return true;
}

std::optional<int64_t> civil_to_unix(unsigned year, unsigned month, unsigned day, unsigned hour,
                                     unsigned minute, unsigned second) {
  if (year < 1970 || year > 9999) return std::nullopt;
  if (month < 1 || month > 12) return std::nullopt;
  if (day < 1 || day > days_in_month(year, month)) return std::nullopt;
  if (hour > 23 || minute > 59 || second > 59) return std::nullopt;
  return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

const char* const kWeekdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

}  // namespace

// "Wed, 21 Oct 2026 07:28:00 GMT" (weekday checked against the date).
std::optional<int64_t> parse_imf_fixdate(std::string_view s) {
  if (s.size() != 29) return std::nullopt;
  if (s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' ||
      s[22] != ':' || s.substr(25) != " GMT") {
    return std::nullopt;
  }
  int weekday = -1;
  for (int i = 0; i < 7; ++i) {
    if (s.substr(0, 3) == kWeekdays[i]) weekday = i;
  }
  unsigned month = 0;
  for (unsigned i = 0; i < 12; ++i) {
    if (s.substr(8, 3) == kMonths[i]) month = i + 1;
  }
  unsigned day = 0, year = 0, hour = 0, minute = 0, second = 0;
  if (weekday < 0 || month == 0 || !fixed_number(s, 5, 2, day) || !fixed_number(s, 12, 4, year) ||
      !fixed_number(s, 17, 2, hour) || !fixed_number(s, 20, 2, minute) ||
      !fixed_number(s, 23, 2, second)) {
    return std::nullopt;
  }
  auto t = civil_to_unix(year, month, day, hour, minute, second);
  if (!t) return std::nullopt;
  // 1970-01-01 was a Thursday (4).
  const int64_t days = days_from_civil(year, month, day);
  if (static_cast<int>(((days % 7) + 11) % 7) != weekday) return std::nullopt;
  return t;
}

// "2026-10-21T07:28:00Z", optional fraction (dropped), "Z" or "+HH:MM"/"-HH:MM".
std::optional<int64_t> parse_iso8601(std::string_view s) {
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (s.size() < 20 || !fixed_number(s, 0, 4, year) || s[4] != '-' ||
      !fixed_number(s, 5, 2, month) || s[7] != '-' || !fixed_number(s, 8, 2, day) ||
      s[10] != 'T' || !fixed_number(s, 11, 2, hour) || s[13] != ':' ||
      !fixed_number(s, 14, 2, minute) || s[16] != ':' || !fixed_number(s, 17, 2, second)) {
    return std::nullopt;
  }
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    if (pos == start || pos - start > 9) return std::nullopt;
  }
  int64_t offset = 0;
  const std::string_view zone = s.substr(pos);
  if (zone == "Z") {
    offset = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    unsigned oh = 0, om = 0;
    if (!fixed_number(zone, 1, 2, oh) || !fixed_number(zone, 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = (oh * 3600 + om * 60) * (zone[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  auto t = civil_to_unix(year, month, day, hour, minute, second);
  if (!t) return std::nullopt;
  const int64_t utc = *t - offset;
  if (utc < 0) return std::nullopt;
  return utc;
}

// ---------------------------------------------------------------------------------------------
// Character classes.

// RFC 6265 cookie-name = token (as the `cookie` package's cookieNameRegExp).
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (is_alpha(c) || is_digit(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

// The `cookie` package's domainValueRegExp:
// ^([.]?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)([.][a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i
namespace {
// Dot-separated labels of [A-Za-z0-9-], 1..63 bytes, not starting or ending with '-'.
bool dns_labels(std::string_view s) {
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!(is_alpha(c) || is_digit(c) || c == '-')) return false;
    }
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}
}  // namespace

bool is_cookie_domain(std::string_view s) {
  if (!s.empty() && s[0] == '.') s.remove_prefix(1);
  return !s.empty() && dns_labels(s);
}

// The `cookie` package's pathValueRegExp: [\u0020-\u003A\u003D-\u007E]*
bool is_cookie_path_chars(std::string_view s) {
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e || u == 0x3b || u == 0x3c) return false;
  }
  return true;
}

bool is_backend_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

// RFC 6265 cookie-value characters (cookie-octet): visible ASCII except '"', ',', ';', '\\'.
bool is_cookie_octets(std::string_view s) {
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\') return false;
  }
  return true;
}

// What a persistence value embedded in a sid may be made of: the base64url alphabet, which
// is also what engine.io's own sids use.
bool is_sid_tag_chars(std::string_view s) {
  for (char c : s) {
    if (!(is_alpha(c) || is_digit(c) || c == '_' || c == '-')) return false;
  }
  return true;
}

// Visible ASCII, no space: 0x21..0x7e.
bool is_visible_ascii(std::string_view s) {
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) return false;
  }
  return true;
}

// An HTTP field value we are willing to emit: visible ASCII, spaces and tabs (so no CR, LF,
// NUL or other controls, and no obs-text).
bool is_header_value(std::string_view s) {
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\t') continue;
    if (u < 0x20 || u > 0x7e) return false;
  }
  return true;
}

// Response headers the proxy owns (framing and hop-by-hop): configuring them would corrupt
// the response or the connection.
bool is_managed_header(std::string_view name) {
  static const char* const kManaged[] = {
      "connection", "content-length", "keep-alive",        "proxy-connection",
      "te",         "trailer",        "transfer-encoding", "upgrade"};
  const std::string l = lower(name);
  for (const char* m : kManaged) {
    if (l == m) return true;
  }
  return false;
}

std::string ms_text(Millis d) { return std::to_string(d.count()) + "ms"; }

// DNS host name: labels of [A-Za-z0-9-], not starting/ending with '-', total <= 253.
bool is_dns_name(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return !s.empty() && s.size() <= 253 && dns_labels(s);
}

// "ip:port" / "[ip]:port" with an IP literal host (no name to resolve).
bool is_ip_address(const std::string& host_port) {
  std::string host = host_port.substr(0, host_port.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// A name to look up for discovery: a DNS name whose labels may also start with '_'
// (SRV: _service._proto.name).
bool is_lookup_name(std::string_view s) {
  std::string plain;
  for (size_t i = 0; i < s.size(); ++i) {
    bool label_start = i == 0 || s[i - 1] == '.';
    if (s[i] == '_' && label_start) continue;
    plain += s[i];
  }
  return is_dns_name(plain);
}

// ---------------------------------------------------------------------------------------------
// YAML walking.

void Loader::error(int line, int column, std::string message) {
  errors.push_back(ConfigError{file_, line, column, std::move(message)});
}

void Loader::error(const YAML::Mark& m, std::string message) {
  if (m.line < 0) {
    error(0, 0, std::move(message));
  } else {
    error(m.line + 1, m.column + 1, std::move(message));
  }
}

YAML::Mark Loader::where(const YAML::Node& value, const YAML::Node& key) {
  if (!value.IsDefined() || value.IsNull() || value.Mark().line < 0) return key.Mark();
  return value.Mark();
}

bool Loader::walk_map(const YAML::Node& map, const YAML::Mark& where_if_bad,
                      const std::vector<Field>& fields) {
  if (!map.IsMap()) {
    error(where_if_bad, "expected a map");
    return false;
  }
  std::map<std::string, int> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      error(key.Mark(), "expected a string key");
      continue;
    }
    const std::string& name = key.Scalar();
    const Field* field = nullptr;
    for (const Field& f : fields) {
      if (name == f.name) field = &f;
    }
    if (field == nullptr) {
      error(key.Mark(), "unknown key '" + name + "'");
      continue;
    }
    auto [pos, inserted] = seen.emplace(name, key.Mark().line + 1);
    if (!inserted) {
      error(key.Mark(),
            "duplicate key '" + name + "' (first at line " + std::to_string(pos->second) + ")");
      continue;
    }
    field->handle(key, value);
  }
  return true;
}

bool Loader::is_plain(const YAML::Node& n) { return n.IsScalar() && n.Tag() == "?"; }

std::optional<std::string> Loader::get_string(const YAML::Node& value, const YAML::Node& key) {
  if (!value.IsScalar()) {
    error(where(value, key), "expected a string");
    return std::nullopt;
  }
  return value.Scalar();
}

// A plain (unquoted) true/false, or one tagged !!bool.
std::optional<bool> Loader::as_bool(const YAML::Node& value) {
  if (!value.IsScalar()) return std::nullopt;
  if (value.Tag() != "?" && value.Tag() != "tag:yaml.org,2002:bool") return std::nullopt;
  const std::string& s = value.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<bool> Loader::get_bool(const YAML::Node& value, const YAML::Node& key) {
  auto b = as_bool(value);
  if (!b) error(where(value, key), "expected a boolean (true or false)");
  return b;
}

// A plain decimal integer, optionally negative, that fits in int64.
std::optional<int64_t> Loader::as_int(const YAML::Node& value) {
  if (!value.IsScalar()) return std::nullopt;
  if (value.Tag() != "?" && value.Tag() != "tag:yaml.org,2002:int") return std::nullopt;
  std::string_view s = value.Scalar();
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  uint64_t v = 0;
  if (!parse_u64_digits(s, v)) return std::nullopt;
  if (!negative && v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  if (negative) {
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) return std::nullopt;
    return static_cast<int64_t>(0 - v);
  }
  return static_cast<int64_t>(v);
}

std::optional<int64_t> Loader::get_int(const YAML::Node& value, const YAML::Node& key, int64_t min,
                                       int64_t max) {
  auto v = as_int(value);
  if (!v) {
    error(where(value, key), "expected an integer");
    return std::nullopt;
  }
  if (*v < min || *v > max) {
    error(where(value, key), "expected an integer between " + std::to_string(min) + " and " +
                                 std::to_string(max));
    return std::nullopt;
  }
  return v;
}

// A duration > 0, or >= 0 with allow_zero.
std::optional<Millis> Loader::get_duration(const YAML::Node& value, const YAML::Node& key,
                                           bool allow_zero) {
  if (!value.IsScalar()) {
    error(where(value, key), "expected a duration (e.g. 500ms, 5s, 2m, 1h, 1d)");
    return std::nullopt;
  }
  auto d = parse_duration(value.Scalar());
  if (!d) {
    error(where(value, key), "invalid duration '" + value.Scalar() +
                                 "' (expected e.g. 500ms, 5s, 2m, 1h, 1d)");
    return std::nullopt;
  }
  if (d->count() <= 0 && !allow_zero) {
    error(where(value, key), "duration must be greater than 0");
    return std::nullopt;
  }
  return d;
}

std::optional<uint64_t> Loader::get_size(const YAML::Node& value, const YAML::Node& key,
                                         uint64_t min, uint64_t max) {
  if (!value.IsScalar()) {
    error(where(value, key), "expected a size (e.g. 4096, 16k, 1MiB)");
    return std::nullopt;
  }
  auto s = parse_size(value.Scalar());
  if (!s) {
    error(where(value, key),
          "invalid size '" + value.Scalar() + "' (expected e.g. 4096, 16k, 1MiB)");
    return std::nullopt;
  }
  if (*s < min || *s > max) {
    error(where(value, key), "size must be between " + std::to_string(min) + " and " +
                                 std::to_string(max) + " bytes");
    return std::nullopt;
  }
  return s;
}

std::optional<SocketAddress> Loader::get_address(const YAML::Node& value, const YAML::Node& key,
                                                 bool allow_port_zero) {
  if (!value.IsScalar()) {
    error(where(value, key), "expected a string \"host:port\"");
    return std::nullopt;
  }
  SocketAddress addr;
  if (auto err = parse_socket_address(value.Scalar(), addr, allow_port_zero)) {
    error(value.Mark(), *err);
    return std::nullopt;
  }
  return addr;
}

}  // namespace config_detail

using config_detail::iequals;
using config_detail::is_digit;
using config_detail::is_dns_name;
using config_detail::parse_u64_digits;

// ---------------------------------------------------------------------------------------------

std::optional<Millis> parse_duration(const std::string& text) {
  std::string_view s = text;
  size_t pos = 0;
  while (pos < s.size() && is_digit(s[pos])) ++pos;
  const std::string_view int_part = s.substr(0, pos);
  if (int_part.empty()) return std::nullopt;
  std::string_view frac_part;
  if (pos < s.size() && s[pos] == '.') {
    const size_t start = ++pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    frac_part = s.substr(start, pos - start);
    if (frac_part.empty() || frac_part.size() > 9) return std::nullopt;
  }
  const std::string_view unit = s.substr(pos);
  uint64_t unit_ms = 0;
  if (unit.empty()) {
    if (!frac_part.empty() || pos != int_part.size()) return std::nullopt;  // bare = integer s
    unit_ms = 1000;
  } else if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 3600 * 1000;
  } else if (unit == "d") {
    unit_ms = 86400 * 1000;
  } else {
    return std::nullopt;
  }
  uint64_t whole = 0;
  if (!parse_u64_digits(int_part, whole)) return std::nullopt;
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (whole > kMax / unit_ms) return std::nullopt;
  uint64_t ms = whole * unit_ms;
  if (!frac_part.empty()) {
    uint64_t frac = 0;
    uint64_t scale = 1;
    parse_u64_digits(frac_part, frac);  // <= 9 digits: cannot overflow
    for (size_t i = 0; i < frac_part.size(); ++i) scale *= 10;
    // frac/scale < 1 and unit_ms <= 86400000: frac * unit_ms < 1e9 * 8.64e7, fits in 64 bits.
    const uint64_t extra = frac * unit_ms / scale;  // sub-millisecond remainder dropped
    if (ms > kMax - extra) return std::nullopt;
    ms += extra;
  }
  return Millis(static_cast<int64_t>(ms));
}

std::optional<uint64_t> parse_size(const std::string& text) {
  std::string_view s = text;
  size_t pos = 0;
  while (pos < s.size() && is_digit(s[pos])) ++pos;
  uint64_t value = 0;
  if (!parse_u64_digits(s.substr(0, pos), value)) return std::nullopt;
  const std::string_view suffix = s.substr(pos);
  uint64_t mult = 1;
  if (suffix.empty()) {
    mult = 1;
  } else if (suffix == "k" || suffix == "K" || suffix == "KB" || suffix == "KiB") {
    mult = 1024;
  } else if (suffix == "m" || suffix == "M" || suffix == "MB" || suffix == "MiB") {
    mult = 1024 * 1024;
  } else {
    return std::nullopt;
  }
  if (value > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  return value * mult;
}

std::optional<std::string> parse_socket_address(const std::string& text, SocketAddress& out,
                                                bool allow_port_zero) {
  std::string_view s = text;
  if (s.empty()) return std::string("empty address (expected host:port)");
  std::string host;
  std::string_view port_text;
  bool bracketed = false;
  if (s[0] == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) {
      return "invalid address '" + text + "': missing ']'";
    }
    host = std::string(s.substr(1, close - 1));
    if (close + 1 >= s.size() || s[close + 1] != ':') {
      return "invalid address '" + text + "': missing port (expected [v6-address]:port)";
    }
    port_text = s.substr(close + 2);
    bracketed = true;
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      return "invalid address '" + text + "': missing port (expected host:port)";
    }
    host = std::string(s.substr(0, colon));
    port_text = s.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return "invalid address '" + text +
             "': IPv6 addresses must be written in brackets, e.g. [::1]:8080";
    }
  }
  uint64_t port = 0;
  if (port_text.empty() || port_text.size() > 5 || !parse_u64_digits(port_text, port) ||
      port > 65535) {
    return "invalid port in '" + text + "' (expected " + (allow_port_zero ? "0" : "1") +
           "..65535)";
  }
  if (port == 0 && !allow_port_zero) {
    return "invalid port in '" + text + "' (expected 1..65535)";
  }
  if (host.empty()) {
    return "invalid address '" + text + "': missing host (use 0.0.0.0 or [::] for all)";
  }

  SocketAddress result;
  result.text = text;
  auto set_v4 = [&](const in_addr& a) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&result.storage);
    sin->sin_family = AF_INET;
    sin->sin_addr = a;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    result.length = sizeof(sockaddr_in);
  };
  auto set_v6 = [&](const in6_addr& a) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&result.storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = a;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    result.length = sizeof(sockaddr_in6);
  };

  if (bracketed) {
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
      return "invalid IPv6 address '" + host + "' in '" + text + "'";
    }
    set_v6(a6);
    out = std::move(result);
    return std::nullopt;
  }
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    set_v4(a4);
    out = std::move(result);
    return std::nullopt;
  }
  if (iequals(host, "localhost")) {
    a4.s_addr = htonl(INADDR_LOOPBACK);
    set_v4(a4);
    out = std::move(result);
    return std::nullopt;
  }
  // Digits and dots only but not a dotted quad ("127.1", "0x7f..."): getaddrinfo would
  // accept inet_aton's legacy forms; refuse them rather than guess.
  if (host.find_first_not_of("0123456789.") == std::string::npos) {
    return "invalid IPv4 address '" + host + "' in '" + text + "'";
  }
  if (!is_dns_name(host)) {
    return "invalid host name '" + host + "' in '" + text + "'";
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    std::string why = rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc);
    if (res != nullptr) freeaddrinfo(res);
    return "cannot resolve '" + host + "': " + why;
  }
  const addrinfo* pick = nullptr;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
    if (ai->ai_family == AF_INET6 && pick == nullptr) pick = ai;
  }
  if (pick == nullptr) {
    freeaddrinfo(res);
    return "cannot resolve '" + host + "': no IPv4 or IPv6 address";
  }
  if (pick->ai_family == AF_INET) {
    set_v4(reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr);
  } else {
    set_v6(reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr);
  }
  freeaddrinfo(res);
  out = std::move(result);
  return std::nullopt;
}

}  // namespace stickyd
