// YAML configuration loader: see include/stickyd/config.hpp for the contract.
//
// Every value is checked and every problem is collected (not only the first), each with the
// 1-based line and column of the offending YAML node. Errors are returned in document order.

#include "stickyd/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string_view>

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

namespace {

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
bool is_cookie_domain(std::string_view s) {
  if (!s.empty() && s[0] == '.') s.remove_prefix(1);
  if (s.empty()) return false;
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

// DNS host name: labels of [A-Za-z0-9-], not starting/ending with '-', total <= 253.
bool is_dns_name(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
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

// ---------------------------------------------------------------------------------------------
// YAML walking.

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  std::vector<ConfigError> errors;

  void error(int line, int column, std::string message) {
    errors.push_back(ConfigError{file_, line, column, std::move(message)});
  }
  void error(const YAML::Mark& m, std::string message) {
    if (m.line < 0) {
      error(0, 0, std::move(message));
    } else {
      error(m.line + 1, m.column + 1, std::move(message));
    }
  }

  // Where to report a problem with `value` (the value of `key`): a null value (`key:` with
  // nothing after it) has no useful position of its own, so point at its key.
  static YAML::Mark where(const YAML::Node& value, const YAML::Node& key) {
    if (!value.IsDefined() || value.IsNull() || value.Mark().line < 0) return key.Mark();
    return value.Mark();
  }

  struct Field {
    const char* name;
    std::function<void(const YAML::Node& key, const YAML::Node& value)> handle;
  };

  // Visits the entries of `map` in document order: unknown keys, non-scalar keys and
  // duplicates are errors; known keys go to their handler. Returns false when `map` is not a
  // map (after reporting it).
  bool walk_map(const YAML::Node& map, const YAML::Mark& where_if_bad,
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

  static bool is_plain(const YAML::Node& n) { return n.IsScalar() && n.Tag() == "?"; }

  std::optional<std::string> get_string(const YAML::Node& value, const YAML::Node& key) {
    if (!value.IsScalar()) {
      error(where(value, key), "expected a string");
      return std::nullopt;
    }
    return value.Scalar();
  }

  // A plain (unquoted) true/false, or one tagged !!bool.
  static std::optional<bool> as_bool(const YAML::Node& value) {
    if (!value.IsScalar()) return std::nullopt;
    if (value.Tag() != "?" && value.Tag() != "tag:yaml.org,2002:bool") return std::nullopt;
    const std::string& s = value.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    return std::nullopt;
  }

  std::optional<bool> get_bool(const YAML::Node& value, const YAML::Node& key) {
    auto b = as_bool(value);
    if (!b) error(where(value, key), "expected a boolean (true or false)");
    return b;
  }

  // A plain decimal integer, optionally negative, that fits in int64.
  static std::optional<int64_t> as_int(const YAML::Node& value) {
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

  std::optional<int64_t> get_int(const YAML::Node& value, const YAML::Node& key, int64_t min,
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

  std::optional<Millis> get_duration(const YAML::Node& value, const YAML::Node& key) {
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
    if (d->count() <= 0) {
      error(where(value, key), "duration must be greater than 0");
      return std::nullopt;
    }
    return d;
  }

  std::optional<uint64_t> get_size(const YAML::Node& value, const YAML::Node& key, uint64_t min,
                                   uint64_t max) {
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

  std::optional<SocketAddress> get_address(const YAML::Node& value, const YAML::Node& key,
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

  // -------------------------------------------------------------------------------------------

  void load(const YAML::Node& root, Config& cfg) {
    if (!root.IsDefined() || root.IsNull()) {
      error(0, 0, "configuration is empty (expected a map with 'listen' and 'backends')");
      return;
    }
    if (!root.IsMap()) {
      error(root.Mark(), "expected a map at the top level");
      return;
    }
    bool have_listen = false;
    bool have_backends = false;
    walk_map(root, root.Mark(),
             {
                 {"listen",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    have_listen = true;
                    load_listen(k, v, cfg);
                  }},
                 {"backends",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    have_backends = true;
                    load_backends(k, v, cfg);
                  }},
                 {"path", [&](const YAML::Node& k, const YAML::Node& v) { load_path(k, v, cfg); }},
                 {"cookie",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_cookie(k, v, cfg); }},
                 {"timeouts",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_timeouts(k, v, cfg); }},
                 {"affinity",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_affinity(k, v, cfg); }},
                 {"limits",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_limits(k, v, cfg); }},
                 {"log", [&](const YAML::Node& k, const YAML::Node& v) { load_log(k, v, cfg); }},
             });
    if (!have_listen) error(root.Mark(), "missing required key 'listen'");
    if (!have_backends) error(root.Mark(), "missing required key 'backends'");
  }

  void load_listen(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    if (value.IsScalar()) {
      if (auto a = get_address(value, key, true)) cfg.listen.push_back(std::move(*a));
      return;
    }
    if (!value.IsSequence()) {
      error(where(value, key), "expected a string \"host:port\" or a list of them");
      return;
    }
    if (value.size() == 0) {
      error(where(value, key), "expected at least one listen address");
      return;
    }
    for (YAML::Node item : value) {
      if (auto a = get_address(item, item, true)) cfg.listen.push_back(std::move(*a));
    }
  }

  void load_backends(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    if (!value.IsSequence()) {
      error(where(value, key), "expected a list");
      return;
    }
    if (value.size() == 0) {
      error(where(value, key), "expected at least one backend");
      return;
    }
    std::map<std::string, int> names;  // name -> 1-based line of its first definition
    for (YAML::Node item : value) {
      BackendConfig backend;
      bool ok = true;
      bool have_name = false;
      bool have_address = false;
      const bool is_map = walk_map(
          item, item.Mark(),
          {
              {"name",
               [&](const YAML::Node& k, const YAML::Node& v) {
                 have_name = true;
                 auto s = get_string(v, k);
                 if (!s) {
                   ok = false;
                   return;
                 }
                 if (!is_backend_name(*s)) {
                   error(v.Mark(), "invalid backend name '" + *s +
                                       "' (allowed characters: A-Z a-z 0-9 _ . -)");
                   ok = false;
                   return;
                 }
                 auto [pos, inserted] = names.emplace(*s, v.Mark().line + 1);
                 if (!inserted) {
                   error(v.Mark(), "duplicate backend name '" + *s + "' (first at line " +
                                       std::to_string(pos->second) + ")");
                   ok = false;
                   return;
                 }
                 backend.name = *s;
               }},
              {"address",
               [&](const YAML::Node& k, const YAML::Node& v) {
                 have_address = true;
                 auto a = get_address(v, k, false);
                 if (!a) {
                   ok = false;
                   return;
                 }
                 backend.address = std::move(*a);
               }},
              {"weight",
               [&](const YAML::Node& k, const YAML::Node& v) {
                 auto w = get_int(v, k, 0, 1000000);
                 if (!w) {
                   ok = false;
                   return;
                 }
                 backend.weight = static_cast<uint32_t>(*w);
               }},
          });
      if (!is_map) continue;
      if (!have_name) {
        error(item.Mark(), "backend is missing required key 'name'");
        ok = false;
      }
      if (!have_address) {
        error(item.Mark(), "backend is missing required key 'address'");
        ok = false;
      }
      if (ok) cfg.backends.push_back(std::move(backend));
    }
  }

  void load_path(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    auto s = get_string(value, key);
    if (!s) return;
    if (s->empty() || (*s)[0] != '/') {
      error(value.Mark(), "path must start with '/'");
      return;
    }
    for (char c : *s) {
      const unsigned char u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || c == '?' || c == '#') {
        error(value.Mark(), "path must not contain spaces, control characters, '?' or '#'");
        return;
      }
    }
    // engine.io: path.replace(/\/$/, "") + "/"
    std::string p = *s;
    if (!p.empty() && p.back() == '/') p.pop_back();
    cfg.path = p + "/";
  }

  void load_cookie(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    CookieConfig c;  // defaults = engine.io's defaults for `cookie: true`
    if (auto b = as_bool(value)) {
      c.inject = *b;
      cfg.cookie = c;
      return;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return;
    }
    c.inject = true;
    bool http_only_set = false;
    bool secure_set_true = false;
    std::optional<YAML::Mark> same_site_none_at;
    walk_map(
        value, value.Mark(),
        {
            {"name",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               if (!is_token(*s)) {
                 error(v.Mark(), "invalid cookie name '" + *s + "' (must be an RFC 6265 token)");
                 return;
               }
               c.name = *s;
             }},
            {"path",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = as_bool(v)) {
                 if (*b) {
                   error(v.Mark(), "expected a path starting with '/' or false");
                 } else {
                   c.path.reset();
                 }
                 return;
               }
               if (!v.IsScalar()) {
                 error(where(v, k), "expected a path starting with '/' or false");
                 return;
               }
               const std::string& s = v.Scalar();
               if (s.empty() || s[0] != '/') {
                 error(v.Mark(), "cookie path must start with '/'");
                 return;
               }
               if (!is_cookie_path_chars(s)) {
                 error(v.Mark(), "cookie path contains characters not allowed in a cookie");
                 return;
               }
               c.path = s;
             }},
            {"domain",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               if (!is_cookie_domain(*s)) {
                 error(v.Mark(), "invalid cookie domain '" + *s + "'");
                 return;
               }
               c.domain = *s;
             }},
            {"httpOnly",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = get_bool(v, k)) {
                 c.http_only = *b;
                 http_only_set = true;
               }
             }},
            {"secure",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = get_bool(v, k)) {
                 c.secure = *b;
                 secure_set_true = *b;
               }
             }},
            {"partitioned",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = get_bool(v, k)) c.partitioned = *b;
             }},
            {"sameSite",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = as_bool(v)) {
                 c.same_site = *b ? SameSite::Strict : SameSite::Unset;
                 return;
               }
               if (!v.IsScalar()) {
                 error(where(v, k), "expected true, false, \"strict\", \"lax\" or \"none\"");
                 return;
               }
               const std::string s = lower(v.Scalar());
               if (s == "strict") {
                 c.same_site = SameSite::Strict;
               } else if (s == "lax") {
                 c.same_site = SameSite::Lax;
               } else if (s == "none") {
                 c.same_site = SameSite::None;
                 same_site_none_at = v.Mark();
               } else {
                 error(v.Mark(), "invalid sameSite '" + v.Scalar() +
                                     "' (expected true, false, \"strict\", \"lax\" or \"none\")");
               }
             }},
            {"maxAge",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto i = as_int(v)) {
                 c.max_age = *i;
                 return;
               }
               if (v.IsScalar()) {
                 if (auto d = parse_duration(v.Scalar())) {
                   c.max_age = d->count() / 1000;
                   return;
                 }
               }
               error(where(v, k), "expected maxAge as an integer number of seconds or a "
                                  "duration (e.g. 3600, 1h, 7d)");
             }},
            {"expires",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               auto t = parse_imf_fixdate(*s);
               if (!t) t = parse_iso8601(*s);
               if (!t) {
                 error(v.Mark(), "invalid expires date '" + *s +
                                     "' (expected e.g. \"Wed, 21 Oct 2026 07:28:00 GMT\" or "
                                     "\"2026-10-21T07:28:00Z\")");
                 return;
               }
               c.expires = *t;
             }},
            {"priority",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               const std::string l = lower(*s);
               if (l == "low") {
                 c.priority = "Low";
               } else if (l == "medium") {
                 c.priority = "Medium";
               } else if (l == "high") {
                 c.priority = "High";
               } else {
                 error(v.Mark(), "invalid priority '" + *s + "' (expected low, medium or high)");
               }
             }},
            {"encode",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               const std::string l = lower(*s);
               if (l == "uri") {
                 c.encode = CookieEncode::Uri;
               } else if (l == "none") {
                 c.encode = CookieEncode::None;
               } else {
                 error(v.Mark(), "invalid encode '" + *s + "' (expected uri or none)");
               }
             }},
        });
    // engine.io: httpOnly defaults to `path !== false`.
    if (!http_only_set) c.http_only = c.path.has_value();
    if (same_site_none_at && !secure_set_true) {
      error(*same_site_none_at, "sameSite=None requires secure: true (browsers reject it)");
    }
    cfg.cookie = c;
  }

  void load_timeouts(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    auto field = [&](const char* name, Millis& target) {
      return Field{name, [&target, this](const YAML::Node& k, const YAML::Node& v) {
                     if (auto d = get_duration(v, k)) target = *d;
                   }};
    };
    walk_map(value, where(value, key),
             {field("connect", cfg.timeouts.connect), field("client", cfg.timeouts.client),
              field("server", cfg.timeouts.server), field("tunnel", cfg.timeouts.tunnel),
              field("backend_keepalive", cfg.timeouts.backend_keepalive)});
  }

  void load_affinity(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    walk_map(value, where(value, key),
             {
                 {"max_sessions",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto i = get_int(v, k, 1, std::numeric_limits<uint32_t>::max())) {
                      cfg.affinity.max_sessions = static_cast<uint32_t>(*i);
                    }
                  }},
                 {"idle_timeout",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (v.IsScalar() && v.Scalar() == "auto") {
                      cfg.affinity.idle_timeout.reset();
                      return;
                    }
                    if (auto d = get_duration(v, k)) cfg.affinity.idle_timeout = *d;
                  }},
                 {"fallback_idle",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto d = get_duration(v, k)) cfg.affinity.fallback_idle = *d;
                  }},
             });
  }

  void load_limits(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    constexpr uint64_t kKiB = 1024;
    constexpr uint64_t kMiB = 1024 * 1024;
    std::optional<YAML::Mark> url_at;
    bool url_bad = false;
    bool header_bad = false;
    walk_map(value, where(value, key),
             {
                 {"max_header_size",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto s = get_size(v, k, kKiB, kMiB)) {
                      cfg.limits.max_header_size = static_cast<uint32_t>(*s);
                    } else {
                      header_bad = true;
                    }
                  }},
                 {"max_url_length",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    url_at = where(v, k);
                    if (auto s = get_size(v, k, 256, kMiB)) {
                      cfg.limits.max_url_length = static_cast<uint32_t>(*s);
                    } else {
                      url_bad = true;
                    }
                  }},
                 {"max_handshake_body",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto s = get_size(v, k, 256, kMiB)) {
                      cfg.limits.max_handshake_body = static_cast<uint32_t>(*s);
                    }
                  }},
             });
    if (url_bad || header_bad) return;
    if (cfg.limits.max_url_length > cfg.limits.max_header_size) {
      if (url_at) {
        error(*url_at, "max_url_length (" + std::to_string(cfg.limits.max_url_length) +
                           ") must not exceed max_header_size (" +
                           std::to_string(cfg.limits.max_header_size) + ")");
      } else {
        // Only the header size was lowered: the default URL limit follows it down.
        cfg.limits.max_url_length = cfg.limits.max_header_size;
      }
    }
  }

  void load_log(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    walk_map(value, where(value, key),
             {
                 {"level",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto s = get_string(v, k);
                    if (!s) return;
                    const std::string l = lower(*s);
                    if (l == "debug") {
                      cfg.log_level = LogLevel::Debug;
                    } else if (l == "info") {
                      cfg.log_level = LogLevel::Info;
                    } else if (l == "warn") {
                      cfg.log_level = LogLevel::Warn;
                    } else if (l == "error") {
                      cfg.log_level = LogLevel::Error;
                    } else {
                      error(v.Mark(), "invalid log level '" + *s +
                                          "' (expected debug, info, warn or error)");
                    }
                  }},
             });
  }

 private:
  std::string file_;
};

ConfigResult finish(Loader& loader, Config& cfg) {
  ConfigResult result;
  std::stable_sort(loader.errors.begin(), loader.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) {
                     if (a.line != b.line) return a.line < b.line;
                     return a.column < b.column;
                   });
  result.errors = std::move(loader.errors);
  if (result.errors.empty()) result.config = std::move(cfg);
  return result;
}

}  // namespace

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

ConfigResult load_config_string(const std::string& yaml, const std::string& name) {
  Loader loader(name);
  Config cfg;
  cfg.source = name;
  try {
    YAML::Node root = YAML::Load(yaml);
    loader.load(root, cfg);
  } catch (const YAML::DeepRecursion& e) {
    loader.error(e.mark, "YAML document is nested too deeply");
  } catch (const YAML::ParserException& e) {
    loader.error(e.mark, e.msg);
  } catch (const YAML::Exception& e) {
    loader.error(e.mark, e.msg);
  } catch (const std::exception& e) {
    loader.error(0, 0, e.what());
  }
  return finish(loader, cfg);
}

ConfigResult load_config_file(const std::string& path) {
  auto fail = [&](int err) {
    ConfigResult result;
    result.errors.push_back(
        ConfigError{path, 0, 0, std::string("cannot read file: ") + std::strerror(err)});
    return result;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno);
  std::string text;
  char buf[16384];
  constexpr size_t kMaxConfigBytes = 16 * 1024 * 1024;
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return fail(err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      ::close(fd);
      return fail(EFBIG);
    }
  }
  ::close(fd);
  return load_config_string(text, path);
}

}  // namespace stickyd
