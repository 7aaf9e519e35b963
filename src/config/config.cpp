// YAML configuration loader: see include/stickyd/config.hpp for the contract.
//
// Every value is checked and every problem is collected (not only the first), each with the
// 1-based line and column of the offending YAML node. Errors are returned in document order.

#include "stickyd/config.hpp"
#include "stickyd/tls.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
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

constexpr std::string_view kTagSeparators = ".~!*:";
constexpr size_t kMaxCookieValue = 64;
// Well under AffinityTable::kMaxBackends, which also has to cover backends removed by reloads.
constexpr size_t kMaxBackendsInConfig = 1024;

std::string ms_text(Millis d) { return std::to_string(d.count()) + "ms"; }

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

class Loader {
 public:
  explicit Loader(std::string file)
      : file_(std::move(file)), base_dir_(std::filesystem::path(file_).parent_path()) {}

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

  // A case-insensitive choice among fixed names. On anything else, one error:
  // "invalid <what> 'x' (expected a, b or c)".
  template <typename T>
  std::optional<T> get_choice(const YAML::Node& value, const YAML::Node& key, const char* what,
                              std::initializer_list<std::pair<const char*, T>> choices) {
    auto s = get_string(value, key);
    if (!s) return std::nullopt;
    const std::string l = lower(*s);
    std::string expected;
    size_t i = 0;
    for (const auto& [name, result] : choices) {
      if (l == name) return result;
      expected += i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ");
      expected += name;
      ++i;
    }
    error(value.Mark(), std::string("invalid ") + what + " '" + *s + "' (expected " + expected + ")");
    return std::nullopt;
  }

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

  // A duration > 0, or >= 0 with allow_zero.
  std::optional<Millis> get_duration(const YAML::Node& value, const YAML::Node& key,
                                     bool allow_zero = false) {
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
    parse_socket_address("127.0.0.1:9901", cfg.admin.listen, true);
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
                 {"workers",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (v.IsScalar() && v.Scalar() == "auto") {
                      cfg.workers = 0;
                      return;
                    }
                    if (auto i = get_int(v, k, 1, 256)) cfg.workers = static_cast<uint32_t>(*i);
                  }},
                 {"tunnel_splice",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto b = get_bool(v, k)) cfg.tunnel_splice = *b;
                  }},
                 {"batch_writes",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto b = get_bool(v, k)) cfg.batch_writes = *b;
                  }},
                 {"resolvers",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_resolvers(k, v, cfg); }},
                 {"upgrade_protocols",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_upgrade_protocols(k, v, cfg); }},
                 {"user",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto name = get_string(v, k)) {
                      if (const passwd* pw = getpwnam(name->c_str())) {
                        cfg.user = *name;
                        cfg.uid = pw->pw_uid;
                        if (cfg.gid < 0) cfg.gid = pw->pw_gid;  // the user's group unless `group:`
                      } else {
                        error(where(v, k), "unknown user '" + *name + "'");
                      }
                    }
                  }},
                 {"group",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto name = get_string(v, k)) {
                      if (const group* gr = getgrnam(name->c_str())) {
                        cfg.group = *name;
                        cfg.gid = gr->gr_gid;
                      } else {
                        error(where(v, k), "unknown group '" + *name + "'");
                      }
                    }
                  }},
                 {"access_log",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_access_log(k, v, cfg); }},
                 {"balance",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_balance(k, v, cfg); }},
                 {"sticky",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_sticky(k, v, cfg); }},
                 {"health",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_health(k, v, cfg); }},
                 {"admin",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_admin(k, v, cfg); }},
                 {"headers",
                  [&](const YAML::Node& k, const YAML::Node& v) { load_headers(k, v, cfg); }},
             });
    if (!have_listen) error(root.Mark(), "missing required key 'listen'");
    if (!have_backends) error(root.Mark(), "missing required key 'backends'");
    // Checks across sections: the document may list them in any order.
    check_server_cookie_name(cfg);
    resolve_backend_cookies(cfg);
    check_same_site_none();
  }

  // `upgrade_protocols: [websocket, ...]`: RFC 9110 tokens; an empty list tunnels nothing.
  void load_upgrade_protocols(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    if (!value.IsSequence()) {
      error(where(value, key), "expected a list of upgrade tokens, e.g. [websocket]");
      return;
    }
    cfg.upgrade_protocols.clear();
    for (YAML::Node item : value) {
      auto s = get_string(item, item);
      if (!s) continue;
      if (!is_token(*s)) {
        error(item.Mark(), "invalid upgrade token '" + *s + "' (must be an RFC 9110 token)");
        continue;
      }
      cfg.upgrade_protocols.push_back(lower(*s));
    }
  }

  // `listen:` one entry or a list; an entry is "host:port" or {address, tls}.
  void load_listen(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    if (value.IsScalar() || value.IsMap()) {
      load_listen_entry(value, key, cfg);
      return;
    }
    if (!value.IsSequence()) {
      error(where(value, key),
            "expected a string \"host:port\", a map {address, tls} or a list of them");
      return;
    }
    if (value.size() == 0) {
      error(where(value, key), "expected at least one listen address");
      return;
    }
    for (YAML::Node item : value) load_listen_entry(item, item, cfg);
  }

  void load_listen_entry(const YAML::Node& item, const YAML::Node& key, Config& cfg) {
    ++listen_entries_;
    if (!item.IsMap()) {
      listen_all_secure_ = false;
      if (auto a = get_address(item, key, true)) {
        cfg.listen.push_back(ListenConfig{std::move(*a), std::nullopt});
      }
      return;
    }
    // Whether this entry asks for TLS with secure cookies, even if it turns out invalid.
    bool secure = false;
    ListenConfig entry;
    bool ok = true;
    bool have_address = false;
    walk_map(item, item.Mark(),
             {
                 {"address",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    have_address = true;
                    if (auto a = get_address(v, k, true)) {
                      entry.address = std::move(*a);
                    } else {
                      ok = false;
                    }
                  }},
                 {"tls",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    entry.tls = load_tls_server(k, v, secure);
                    if (!entry.tls) ok = false;
                  }},
             });
    if (!have_address) {
      error(item.Mark(), "listen entry is missing required key 'address'");
      ok = false;
    }
    if (!secure) listen_all_secure_ = false;
    if (ok) cfg.listen.push_back(std::move(entry));
  }

  // ---- TLS -----------------------------------------------------------------------------------

  // A file named in the config: relative to the config file's directory, stored absolute.
  std::string resolve_path(const std::string& p) const {
    namespace fs = std::filesystem;
    fs::path path(p);
    if (path.is_relative()) path = base_dir_ / path;
    if (path.is_relative()) {
      std::error_code ec;
      fs::path abs = fs::absolute(path, ec);
      if (!ec) path = abs;
    }
    return path.lexically_normal().string();
  }

  struct PathAt {
    std::string path;
    YAML::Mark at;      // the value
    YAML::Mark key_at;  // its key
  };

  std::optional<PathAt> get_path(const YAML::Node& value, const YAML::Node& key) {
    auto s = get_string(value, key);
    if (!s) return std::nullopt;
    if (s->empty()) {
      error(where(value, key), "expected a file path");
      return std::nullopt;
    }
    return PathAt{resolve_path(*s), value.Mark(), key.Mark()};
  }

  // Reports what tls::check_key_pair finds at the `cert` or the `key` node.
  bool check_pair(const PathAt& cert, const PathAt& key) {
    if (auto problem = tls::check_key_pair(cert.path, key.path)) {
      error(problem->role == tls::FileRole::Key ? key.at : cert.at, problem->message);
      return false;
    }
    return true;
  }

  // `tls:` of a listener. nullopt after reporting errors.
  // `secure_cookies`: whether it asks for TLS with secure cookies (set even on errors).
  std::optional<TlsServerConfig> load_tls_server(const YAML::Node& key, const YAML::Node& value,
                                                 bool& secure_cookies) {
    secure_cookies = false;
    if (!value.IsMap()) {
      error(where(value, key), "expected a map (cert and key, or certificates, and options)");
      return std::nullopt;
    }
    const size_t errors_before = errors.size();
    TlsServerConfig t;
    std::optional<PathAt> cert, key_file;
    std::optional<YAML::Mark> certificates_at;
    struct Pair {
      PathAt cert, key;
    };
    std::vector<Pair> pairs;  // parallel to t.certificates
    walk_map(
        value, value.Mark(),
        {
            {"cert", [&](const YAML::Node& k, const YAML::Node& v) { cert = get_path(v, k); }},
            {"key", [&](const YAML::Node& k, const YAML::Node& v) { key_file = get_path(v, k); }},
            {"certificates",
             [&](const YAML::Node& k, const YAML::Node& v) {
               certificates_at = k.Mark();
               if (!v.IsSequence() || v.size() == 0) {
                 error(where(v, k), "expected a non-empty list of {cert, key}");
                 return;
               }
               for (YAML::Node item : v) {
                 std::optional<PathAt> c, kf;
                 const bool is_map = walk_map(
                     item, item.Mark(),
                     {
                         {"cert", [&](const YAML::Node& ik,
                                      const YAML::Node& iv) { c = get_path(iv, ik); }},
                         {"key", [&](const YAML::Node& ik,
                                     const YAML::Node& iv) { kf = get_path(iv, ik); }},
                     });
                 if (!is_map) continue;
                 if (!c || !kf) {
                   if (!c && !kf) {
                     error(item.Mark(), "certificate entry needs 'cert' and 'key'");
                   } else if (!c) {
                     error(kf->key_at, "'key' without 'cert'");
                   } else {
                     error(c->key_at, "'cert' without 'key'");
                   }
                   continue;
                 }
                 t.certificates.push_back(TlsCertificate{c->path, kf->path, item.Mark().line + 1,
                                                         item.Mark().column + 1});
                 pairs.push_back(Pair{*c, *kf});
               }
             }},
            {"min_version",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (!v.IsScalar()) {
                 error(where(v, k), "expected \"1.2\" or \"1.3\"");
                 return;
               }
               // `1.2` unquoted is a YAML float: its text is what counts.
               std::string s = lower(v.Scalar());
               if (s.rfind("tlsv", 0) == 0) s = s.substr(4);
               if (s == "1.2" || s == "1.3") {
                 t.min_version = s;
               } else if (s == "1" || s == "1.0" || s == "1.1") {
                 error(v.Mark(), "TLS 1.0/1.1 are insecure and not supported (use 1.2 or 1.3)");
               } else {
                 error(v.Mark(), "invalid min_version '" + v.Scalar() +
                                     "' (expected \"1.2\" or \"1.3\")");
               }
             }},
            {"ciphers",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               if (s->empty()) {
                 error(where(v, k), "ciphers must not be empty (leave it out for the default)");
                 return;
               }
               if (auto why = tls::check_cipher_list(*s)) {
                 error(v.Mark(), *why);
                 return;
               }
               t.ciphers = *s;
             }},
            {"ciphersuites",
             [&](const YAML::Node& k, const YAML::Node& v) {
               auto s = get_string(v, k);
               if (!s) return;
               if (s->empty()) {
                 error(where(v, k),
                       "ciphersuites must not be empty (leave it out for the default)");
                 return;
               }
               if (auto why = tls::check_ciphersuites(*s)) {
                 error(v.Mark(), *why);
                 return;
               }
               t.ciphersuites = *s;
             }},
            {"session_tickets",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = get_bool(v, k)) t.session_tickets = *b;
             }},
            {"ticket_key_rotation",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto d = get_duration(v, k)) t.ticket_key_rotation = *d;
             }},
            {"handshake_timeout",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto d = get_duration(v, k)) t.handshake_timeout = *d;
             }},
            {"secure_cookies",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto b = get_bool(v, k)) t.secure_cookies = *b;
             }},
        });
    secure_cookies = t.secure_cookies;
    if (certificates_at) {
      if (cert || key_file) {
        error(*certificates_at, "use either cert and key or certificates, not both");
      }
    } else if (cert && key_file) {
      t.certificates.push_back(TlsCertificate{cert->path, key_file->path, cert->at.line + 1,
                                              cert->at.column + 1});
      pairs.push_back(Pair{*cert, *key_file});
    } else if (cert) {
      error(cert->key_at, "'cert' without 'key'");
    } else if (key_file) {
      error(key_file->key_at, "'key' without 'cert'");
    } else if (errors.size() == errors_before) {
      error(value.Mark(), "tls needs a certificate: cert and key, or certificates");
    }
    // The files, each pair at its own nodes (all of them, even next to other errors).
    for (const Pair& p : pairs) check_pair(p.cert, p.key);
    if (errors.size() != errors_before) return std::nullopt;
    // Whatever else OpenSSL could object to, exactly as the listener will be set up.
    std::string why;
    if (!tls::ServerContext::create(t, why)) {
      error(value.Mark(), why);
      return std::nullopt;
    }
    return t;
  }

  // `tls:` of a backend: true, false or {ca, verify, sni, cert, key}. nullopt after errors.
  std::optional<TlsClientConfig> load_tls_client(const YAML::Node& key, const YAML::Node& value) {
    TlsClientConfig t;
    t.line = key.Mark().line + 1;
    t.column = key.Mark().column + 1;
    if (auto b = as_bool(value)) {
      t.enabled = *b;
    } else if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map {ca, verify, sni, cert, key}");
      return std::nullopt;
    } else {
      t.enabled = true;
    }
    const size_t errors_before = errors.size();
    std::optional<PathAt> ca, cert, key_file;
    if (value.IsMap()) {
      walk_map(value, value.Mark(),
               {
                   {"ca", [&](const YAML::Node& k, const YAML::Node& v) { ca = get_path(v, k); }},
                   {"verify",
                    [&](const YAML::Node& k, const YAML::Node& v) {
                      if (auto b = get_bool(v, k)) t.verify = *b;
                    }},
                   {"sni",
                    [&](const YAML::Node& k, const YAML::Node& v) {
                      auto s = get_string(v, k);
                      if (!s) return;
                      in6_addr a6{};
                      if (inet_pton(AF_INET, s->c_str(), &a6) == 1 ||
                          inet_pton(AF_INET6, s->c_str(), &a6) == 1 || !is_dns_name(*s)) {
                        error(v.Mark(), "invalid sni '" + *s + "' (expected a host name)");
                        return;
                      }
                      t.sni = *s;
                    }},
                   {"cert",
                    [&](const YAML::Node& k, const YAML::Node& v) { cert = get_path(v, k); }},
                   {"key",
                    [&](const YAML::Node& k, const YAML::Node& v) { key_file = get_path(v, k); }},
               });
    }
    if (cert && !key_file) error(cert->key_at, "'cert' without 'key'");
    if (key_file && !cert) error(key_file->key_at, "'key' without 'cert'");
    if (ca) {
      t.ca_file = ca->path;
      if (auto why = tls::check_ca_file(ca->path)) error(ca->at, *why);
    }
    if (cert && key_file) {
      t.cert_file = cert->path;
      t.key_file = key_file->path;
      check_pair(*cert, *key_file);
    }
    if (errors.size() != errors_before) return std::nullopt;
    if (!t.enabled) return t;
    std::string why;
    if (!tls::ClientContext::create(t, why)) {
      error(key.Mark(), why);
      return std::nullopt;
    }
    return t;
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
    if (value.size() > kMaxBackendsInConfig) {
      error(where(value, key), "too many backends (" + std::to_string(value.size()) +
                                   "; at most " + std::to_string(kMaxBackendsInConfig) + ")");
      return;
    }
    std::map<std::string, int> names;  // name -> 1-based line of its first definition
    for (YAML::Node item : value) {
      if (item.IsMap() && item.begin() != item.end() && item.begin()->first.IsScalar() &&
          item.begin()->first.Scalar() == "discover") {
        load_discover_entry(item, cfg);
        continue;
      }
      BackendConfig backend;
      BackendMarks marks;
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
                 marks.name = v.Mark();
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
              // Values are checked in resolve_backend_cookies, once the sticky section (which
              // decides the allowed characters and the defaults) is known.
              {"cookie",
               [&](const YAML::Node& k, const YAML::Node& v) {
                 auto s = get_string(v, k);
                 if (!s) {
                   ok = false;
                   return;
                 }
                 backend.cookie = *s;
                 marks.cookie = v.Mark();
               }},
              {"cookie_aliases",
               [&](const YAML::Node& k, const YAML::Node& v) {
                 auto add = [&](const YAML::Node& n) {
                   if (!n.IsScalar()) {
                     error(n.Mark(), "expected a string");
                     ok = false;
                     return;
                   }
                   backend.cookie_aliases.push_back(n.Scalar());
                   marks.aliases.push_back(n.Mark());
                 };
                 if (v.IsScalar()) {
                   add(v);
                 } else if (v.IsSequence()) {
                   for (YAML::Node alias : v) add(alias);
                 } else {
                   error(where(v, k), "expected a string or a list of strings");
                   ok = false;
                 }
               }},
              {"tls",
               [&](const YAML::Node& k, const YAML::Node& v) {
                 if (auto t = load_tls_client(k, v)) {
                   backend.tls = std::move(*t);
                 } else {
                   ok = false;
                 }
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
      if (ok) {
        cfg.backends.push_back(std::move(backend));
        backend_marks_.push_back(std::move(marks));
      }
    }
  }

  // `- discover: {name, type, port, weight, tls, max, hold}` (see discovery.hpp).
  void load_discover_entry(const YAML::Node& item, Config& cfg) {
    if (item.size() != 1) {
      error(item.Mark(), "a discover entry has its options inside discover: {...}");
      return;
    }
    const YAML::Node key = item.begin()->first;
    const YAML::Node value = item.begin()->second;
    DiscoverConfig d;
    d.line = value.Mark().line + 1;
    d.column = value.Mark().column + 1;
    bool ok = true, have_name = false, have_port = false;
    YAML::Mark port_mark;
    if (!walk_map(value, where(value, key),
                  {
                      {"name",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         have_name = true;
                         auto s = get_string(v, k);
                         if (!s) return void(ok = false);
                         if (!is_lookup_name(*s)) {
                           error(v.Mark(), "invalid DNS name '" + *s + "'");
                           return void(ok = false);
                         }
                         d.name = *s;
                       }},
                      {"type",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         auto t = get_choice<DiscoverType>(
                             v, k, "record type",
                             {{"a", DiscoverType::A}, {"aaaa", DiscoverType::AAAA}, {"srv", DiscoverType::SRV}});
                         if (!t) return void(ok = false);
                         d.type = *t;
                       }},
                      {"port",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         have_port = true;
                         port_mark = v.Mark();
                         auto p = get_int(v, k, 1, 65535);
                         if (!p) return void(ok = false);
                         d.port = static_cast<uint16_t>(*p);
                       }},
                      {"weight",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         auto w = get_int(v, k, 0, 1000000);
                         if (!w) return void(ok = false);
                         d.weight = static_cast<uint32_t>(*w);
                       }},
                      {"max",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         auto m = get_int(v, k, 1, static_cast<int64_t>(kMaxBackendsInConfig));
                         if (!m) return void(ok = false);
                         d.max = static_cast<uint32_t>(*m);
                       }},
                      {"hold",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         auto h = get_duration(v, k, true);
                         if (!h) return void(ok = false);
                         d.hold = *h;
                       }},
                      {"tls",
                       [&](const YAML::Node& k, const YAML::Node& v) {
                         if (auto t = load_tls_client(k, v)) d.tls = std::move(*t);
                         else ok = false;
                       }},
                  }))
      return;
    if (!have_name) {
      error(value.Mark(), "discover is missing required key 'name'");
      ok = false;
    }
    if (d.type == DiscoverType::SRV && have_port) {
      error(port_mark, "an SRV discover takes its ports from the records: remove 'port'");
      ok = false;
    } else if (d.type != DiscoverType::SRV && !have_port && ok) {
      error(value.Mark(), "discover of A/AAAA records is missing required key 'port'");
      ok = false;
    }
    if (ok) cfg.discover.push_back(std::move(d));
  }

  // `resolvers: {nameservers, interval, timeout}`.
  void load_resolvers(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    walk_map(value, where(value, key),
             {
                 {"nameservers",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (!v.IsSequence()) {
                      error(where(v, k), "expected a list of \"ip:port\" (or \"ip\")");
                      return;
                    }
                    for (YAML::Node n : v) {
                      auto s = get_string(n, n);
                      if (!s) continue;
                      SocketAddress a;
                      // An IP literal (c-ares takes no names here); port 53 by default.
                      std::string text = *s;
                      bool v6 = !text.empty() && text.front() == '[';
                      bool has_port = v6 ? text.find("]:") != std::string::npos
                                         : text.find(':') != std::string::npos;
                      if (!has_port) text += ":53";
                      if (parse_socket_address(text, a, false) || !is_ip_address(text)) {
                        error(n.Mark(), "invalid nameserver '" + *s + "' (expected \"ip:port\" or \"ip\")");
                        continue;
                      }
                      cfg.resolvers.nameservers.push_back(text);
                    }
                  }},
                 {"interval",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto d = get_duration(v, k);
                    if (!d) return;
                    if (d->count() < 100) {
                      error(where(v, k), "interval must be at least 100ms");
                      return;
                    }
                    cfg.resolvers.interval = *d;
                  }},
                 {"timeout",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto d = get_duration(v, k)) cfg.resolvers.timeout = *d;
                  }},
             });
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
               if (auto p = get_choice<const char*>(
                       v, k, "priority", {{"low", "Low"}, {"medium", "Medium"}, {"high", "High"}}))
                 c.priority = *p;
             }},
            {"encode",
             [&](const YAML::Node& k, const YAML::Node& v) {
               if (auto e = get_choice<CookieEncode>(
                       v, k, "encode", {{"uri", CookieEncode::Uri}, {"none", CookieEncode::None}}))
                 c.encode = *e;
             }},
        });
    // engine.io: httpOnly defaults to `path !== false`.
    if (!http_only_set) c.http_only = c.path.has_value();
    // Checked once the listeners are known (check_same_site_none).
    if (same_site_none_at && !secure_set_true) same_site_none_at_ = same_site_none_at;
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
              field("backend_keepalive", cfg.timeouts.backend_keepalive),
              field("client_header", cfg.timeouts.client_header),
              field("keepalive", cfg.timeouts.keepalive),
              field("body_idle", cfg.timeouts.body_idle),
              Field{"shutdown_grace", [&cfg, this](const YAML::Node& k, const YAML::Node& v) {
                      if (auto d = get_duration(v, k, true)) cfg.shutdown_grace = *d;
                    }}});
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
                 {"max_headers",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto i = get_int(v, k, 8, 10000)) cfg.limits.max_headers = static_cast<uint32_t>(*i);
                  }},
                 {"max_connections",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto i = get_int(v, k, 1, 10000000)) cfg.limits.max_connections = static_cast<uint32_t>(*i);
                  }},
                 {"max_connections_per_ip",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto i = get_int(v, k, 0, 10000000)) cfg.limits.max_connections_per_ip = static_cast<uint32_t>(*i);
                  }},
                 {"max_pending_backend",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto i = get_int(v, k, 1, 1000000)) cfg.limits.max_pending_backend = static_cast<uint32_t>(*i);
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
                    if (auto l = get_choice<LogLevel>(v, k, "log level",
                                                      {{"debug", LogLevel::Debug},
                                                       {"info", LogLevel::Info},
                                                       {"warn", LogLevel::Warn},
                                                       {"error", LogLevel::Error}}))
                      cfg.log_level = *l;
                  }},
             });
  }

  void load_access_log(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    if (auto b = as_bool(value)) {
      cfg.access_log = *b;
      cfg.access_log_json = false;
      return;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return;
    }
    cfg.access_log = true;
    walk_map(value, value.Mark(),
             {
                 {"format",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto json = get_choice<bool>(v, k, "access log format",
                                                     {{"text", false}, {"json", true}}))
                      cfg.access_log_json = *json;
                  }},
             });
  }

  void load_balance(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    if (auto b = get_choice<BalancePolicy>(value, key, "balance",
                                           {{"round_robin", BalancePolicy::RoundRobin},
                                            {"least_conn", BalancePolicy::LeastConn},
                                            {"random", BalancePolicy::Random},
                                            {"hash", BalancePolicy::Hash}}))
      cfg.balance = *b;
  }

  // ---- sticky --------------------------------------------------------------------------------

  void load_separator(const YAML::Node& key, const YAML::Node& value, std::string& out) {
    auto s = get_string(value, key);
    if (!s) return;
    if (s->size() != 1 || kTagSeparators.find((*s)[0]) == std::string_view::npos) {
      error(value.Mark(), "invalid separator '" + *s + "' (expected one of . ~ ! * :)");
      return;
    }
    out = *s;
  }

  void load_sticky(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    StickyConfig& st = cfg.sticky;
    // tag_sids and backend_tags both describe SidTagConfig; they are combined at the end.
    std::optional<SidTagConfig> tag_sids;
    std::optional<SidTagConfig> backend_tags;
    YAML::Mark tag_sids_key;
    YAML::Mark backend_tags_key;
    walk_map(value, where(value, key),
             {
                 {"secret",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto s = get_string(v, k);
                    if (!s) {
                      secret_bad_ = true;
                      return;
                    }
                    if (s->size() < 16) {
                      error(v.Mark(), "sticky secret must be at least 16 bytes long (got " +
                                          std::to_string(s->size()) + ")");
                      secret_bad_ = true;
                      return;
                    }
                    st.secret = *s;
                  }},
                 {"on_down",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto strict = get_choice<bool>(v, k, "on_down",
                                                       {{"redispatch", false}, {"strict", true}}))
                      st.strict = *strict;
                  }},
                 {"server_cookie",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    load_server_cookie(k, v, st.server_cookie);
                  }},
                 {"tag_sids",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    tag_sids_key = k.Mark();
                    tag_sids = load_tag_sids(k, v);
                  }},
                 {"backend_tags",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    backend_tags_key = k.Mark();
                    backend_tags = load_backend_tags(k, v);
                  }},
             });
    const bool tag_on = tag_sids && (tag_sids->enabled || tag_sids->accept_backend_tags);
    const bool backend_on = backend_tags && backend_tags->accept_backend_tags;
    if (tag_on && backend_on) {
      const bool tag_first = tag_sids_key.line < backend_tags_key.line ||
                             (tag_sids_key.line == backend_tags_key.line &&
                              tag_sids_key.column < backend_tags_key.column);
      error(tag_first ? backend_tags_key : tag_sids_key,
            "tag_sids and backend_tags cannot both be on (tag_sids already accepts the tags "
            "backends make; keep one)");
    } else if (backend_on) {
      st.tag = *backend_tags;
    } else if (tag_sids) {
      st.tag = *tag_sids;
    }
  }

  // `tag_sids: true|false|{enabled, separator, accept_backend_tags}`.
  SidTagConfig load_tag_sids(const YAML::Node& key, const YAML::Node& value) {
    SidTagConfig t;
    if (auto b = as_bool(value)) {
      t.enabled = *b;
      t.accept_backend_tags = *b;
      return t;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return t;
    }
    t.enabled = true;
    std::optional<YAML::Mark> accept_false_at;
    walk_map(value, value.Mark(),
             {
                 {"enabled",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto b = get_bool(v, k)) t.enabled = *b;
                  }},
                 {"separator", [&](const YAML::Node& k,
                                   const YAML::Node& v) { load_separator(k, v, t.separator); }},
                 {"accept_backend_tags",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto b = get_bool(v, k);
                    if (!b) return;
                    t.accept_backend_tags = *b;
                    if (!*b) accept_false_at = v.Mark();
                  }},
             });
    if (t.enabled) {
      if (accept_false_at) {
        error(*accept_false_at,
              "accept_backend_tags cannot be false while tag_sids is enabled (a proxy that "
              "tags sids always routes tagged ones)");
      }
      t.accept_backend_tags = true;
    }
    return t;
  }

  // `backend_tags: true|false|{separator}`: route sids tagged by the backends' generateId,
  // without tagging any.
  SidTagConfig load_backend_tags(const YAML::Node& key, const YAML::Node& value) {
    SidTagConfig t;
    if (auto b = as_bool(value)) {
      t.accept_backend_tags = *b;
      return t;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return t;
    }
    t.accept_backend_tags = true;
    walk_map(value, value.Mark(),
             {
                 {"separator", [&](const YAML::Node& k,
                                   const YAML::Node& v) { load_separator(k, v, t.separator); }},
             });
    return t;
  }

  void load_server_cookie(const YAML::Node& key, const YAML::Node& value, ServerCookieConfig& sc) {
    if (auto b = as_bool(value)) {
      sc.enabled = *b;
      server_cookie_at_ = value.Mark();
      return;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return;
    }
    sc.enabled = true;
    server_cookie_at_ = value.Mark();
    std::optional<YAML::Mark> indirect_at;
    std::optional<YAML::Mark> preserve_at;
    auto flag = [&](const char* name, bool& target, std::optional<YAML::Mark>* at) {
      return Field{name, [this, &target, at](const YAML::Node& k, const YAML::Node& v) {
                     if (auto b = get_bool(v, k)) {
                       target = *b;
                       if (at != nullptr) *at = v.Mark();
                     }
                   }};
    };
    auto duration = [&](const char* name, std::optional<Millis>& target) {
      return Field{name, [this, &target](const YAML::Node& k, const YAML::Node& v) {
                     if (auto d = get_duration(v, k)) target = *d;
                   }};
    };
    walk_map(value, value.Mark(),
             {
                 {"name",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto s = get_string(v, k);
                    if (!s) return;
                    if (!is_token(*s)) {
                      error(v.Mark(),
                            "invalid cookie name '" + *s + "' (must be an RFC 6265 token)");
                      return;
                    }
                    sc.name = *s;
                    server_cookie_name_at_ = v.Mark();
                  }},
                 {"mode",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto m = get_choice<ServerCookieMode>(v, k, "server cookie mode",
                                                              {{"insert", ServerCookieMode::Insert},
                                                               {"prefix", ServerCookieMode::Prefix},
                                                               {"rewrite", ServerCookieMode::Rewrite}}))
                      sc.mode = *m;
                  }},
                 flag("indirect", sc.indirect, &indirect_at),
                 flag("nocache", sc.nocache, nullptr),
                 flag("preserve", sc.preserve, &preserve_at),
                 flag("httponly", sc.httponly, nullptr),
                 flag("secure", sc.secure, nullptr),
                 {"domain",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto add = [&](const YAML::Node& n) {
                      if (!n.IsScalar()) {
                        error(n.Mark(), "expected a string");
                        return;
                      }
                      if (!is_cookie_domain(n.Scalar())) {
                        error(n.Mark(), "invalid cookie domain '" + n.Scalar() + "'");
                        return;
                      }
                      sc.domains.push_back(n.Scalar());
                    };
                    if (v.IsScalar()) {
                      add(v);
                    } else if (v.IsSequence() && v.size() > 0) {
                      for (YAML::Node d : v) add(d);
                    } else {
                      error(where(v, k), "expected a domain or a non-empty list of domains");
                    }
                  }},
                 duration("maxidle", sc.maxidle),
                 duration("maxlife", sc.maxlife),
             });
    // HAProxy refuses these combinations too.
    if (sc.mode == ServerCookieMode::Rewrite && sc.indirect && indirect_at) {
      error(*indirect_at, "indirect cannot be used with mode rewrite");
    }
    if (sc.preserve && sc.mode != ServerCookieMode::Insert && !sc.indirect && preserve_at) {
      error(*preserve_at, "preserve requires mode insert or indirect: true");
    }
  }

  // Browsers drop SameSite=None cookies without Secure. Fine with `secure: true`, or when
  // every listener is TLS with secure_cookies (stickyd then adds Secure itself).
  // Judged on what the listen entries ask for, so that a listener rejected for another reason
  // (say, an unreadable certificate) does not add this error too.
  void check_same_site_none() {
    if (!same_site_none_at_ || (listen_entries_ > 0 && listen_all_secure_)) return;
    error(*same_site_none_at_,
          "sameSite=None requires secure: true (browsers reject it), or every listener on TLS "
          "with secure_cookies");
  }

  // In insert and rewrite modes the proxy's cookie and the session cookie would be the same
  // cookie; in prefix mode, prefixing the session cookie is the whole point.
  void check_server_cookie_name(const Config& cfg) {
    const ServerCookieConfig& sc = cfg.sticky.server_cookie;
    if (!sc.enabled || sc.mode == ServerCookieMode::Prefix || sc.name != cfg.cookie.name) return;
    const std::string mode = sc.mode == ServerCookieMode::Insert ? "insert" : "rewrite";
    if (server_cookie_name_at_) {
      error(*server_cookie_name_at_, "server cookie name '" + sc.name +
                                         "' is the same as cookie.name: with mode " + mode +
                                         " they would collide (choose another name)");
    } else if (server_cookie_at_) {
      error(*server_cookie_at_, "the default server cookie name '" + sc.name +
                                    "' is the same as cookie.name: with mode " + mode +
                                    " they would collide (set server_cookie.name)");
    }
  }

  // Why `value` cannot be a backend's persistence value, or nullopt when it can.
  static std::optional<std::string> cookie_value_problem(const std::string& value,
                                                         const Config& cfg) {
    const SidTagConfig& tag = cfg.sticky.tag;
    const bool tagging = tag.enabled || tag.accept_backend_tags;
    const std::string q = "cookie value '" + value + "'";
    if (value.empty()) return std::string("cookie value must not be empty");
    if (value.size() > kMaxCookieValue) {
      return q + " is longer than " + std::to_string(kMaxCookieValue) + " bytes";
    }
    if (tagging) {
      if (value.find(tag.separator) != std::string::npos) {
        return q + " contains the sid tag separator '" + tag.separator + "'";
      }
      if (!is_sid_tag_chars(value)) {
        return q + " may only contain A-Z a-z 0-9 _ - when sids are tagged (it is part of the sid)";
      }
    } else if (!is_cookie_octets(value)) {
      return q +
             " contains characters not allowed in a cookie value (RFC 6265: no spaces, "
             "controls, '\"', ',', ';' or '\\')";
    }
    if (cfg.sticky.server_cookie.enabled && value.find_first_of("~|") != std::string::npos) {
      return q + " must not contain '~' or '|' (server cookie delimiters, as in HAProxy)";
    }
    return std::nullopt;
  }

  // Fills in default cookie values, then checks every value and alias (own and across
  // backends), each at its node; a defaulted value is reported at the backend's name.
  void resolve_backend_cookies(Config& cfg) {
    struct Entry {
      const std::string* value;
      YAML::Mark at;
      size_t backend;
      std::string note;  // how a defaulted value came about
    };
    std::vector<Entry> entries;
    for (size_t i = 0; i < cfg.backends.size(); ++i) {
      BackendConfig& b = cfg.backends[i];
      const BackendMarks& m = backend_marks_[i];
      if (m.cookie) {
        entries.push_back(Entry{&b.cookie, *m.cookie, i, ""});
      } else if (!cfg.sticky.secret.empty()) {
        b.cookie = derive_cookie_value(cfg.sticky.secret, b.name);
        entries.push_back(Entry{&b.cookie, m.name, i,
                                " (derived from sticky.secret for backend '" + b.name + "')"});
      } else {
        b.cookie = b.name;
        // With a bad secret the intended value is unknown: that error is enough.
        if (!secret_bad_) {
          entries.push_back(Entry{
              &b.cookie, m.name, i,
              " (backend '" + b.name + "' defaults to its name; set its cookie or sticky.secret)"});
        }
      }
      for (size_t j = 0; j < b.cookie_aliases.size(); ++j) {
        entries.push_back(Entry{&b.cookie_aliases[j], m.aliases[j], i, ""});
      }
    }
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      if (a.at.line != b.at.line) return a.at.line < b.at.line;
      return a.at.column < b.at.column;
    });
    std::map<std::string, size_t> owner;  // value -> backend index
    for (const Entry& e : entries) {
      if (auto why = cookie_value_problem(*e.value, cfg)) {
        error(e.at, *why + e.note);
        continue;
      }
      auto [pos, inserted] = owner.emplace(*e.value, e.backend);
      if (!inserted) {
        error(e.at, "cookie value '" + *e.value + "' already used by backend '" +
                        cfg.backends[pos->second].name + "'" + e.note);
      }
    }
  }

  // ---- health, admin, headers ----------------------------------------------------------------

  void load_health(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    HealthCheckConfig& h = cfg.health;
    if (auto b = as_bool(value)) {
      h.enabled = *b;
      return;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return;
    }
    h.enabled = true;
    std::optional<YAML::Mark> interval_at;
    std::optional<YAML::Mark> timeout_at;
    bool interval_bad = false;
    bool timeout_bad = false;
    auto count = [&](const char* name, uint32_t& target, int64_t min) {
      return Field{name, [this, &target, min](const YAML::Node& k, const YAML::Node& v) {
                     if (auto i = get_int(v, k, min, 100)) target = static_cast<uint32_t>(*i);
                   }};
    };
    walk_map(value, value.Mark(),
             {
                 {"enabled",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto b = get_bool(v, k)) h.enabled = *b;
                  }},
                 {"method",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto s = get_string(v, k);
                    if (!s) return;
                    std::string u = *s;
                    for (char& c : u) {
                      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
                    }
                    if (u != "GET" && u != "HEAD" && u != "OPTIONS") {
                      error(v.Mark(), "invalid health check method '" + *s +
                                          "' (expected GET, HEAD or OPTIONS)");
                      return;
                    }
                    h.method = u;
                  }},
                 {"path",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto s = get_string(v, k);
                    if (!s) return;
                    if (s->empty() || (*s)[0] != '/') {
                      error(v.Mark(), "health check path must start with '/'");
                      return;
                    }
                    if (!is_visible_ascii(*s) || s->find('#') != std::string::npos) {
                      error(v.Mark(),
                            "health check path must not contain spaces, control characters or '#'");
                      return;
                    }
                    h.path = *s;
                  }},
                 {"expect_status",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto i = as_int(v);
                    if (!i || !(*i == 0 || (*i >= 100 && *i <= 599))) {
                      error(where(v, k),
                            "expected an HTTP status between 100 and 599, or 0 for any 2xx/3xx");
                      return;
                    }
                    h.expect_status = static_cast<int>(*i);
                  }},
                 {"interval",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    interval_at = where(v, k);
                    if (auto d = get_duration(v, k)) {
                      h.interval = *d;
                    } else {
                      interval_bad = true;
                    }
                  }},
                 {"timeout",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    timeout_at = where(v, k);
                    if (auto d = get_duration(v, k)) {
                      h.timeout = *d;
                    } else {
                      timeout_bad = true;
                    }
                  }},
                 count("rise", h.rise, 1),
                 count("fall", h.fall, 1),
                 {"slow_start",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto d = get_duration(v, k, true)) h.slow_start = *d;
                  }},
                 count("passive_fall", h.passive_fall, 0),
             });
    if (interval_bad || timeout_bad || h.timeout <= h.interval) return;
    const std::string why = "health check timeout (" + ms_text(h.timeout) +
                            ") must not exceed interval (" + ms_text(h.interval) + ")";
    if (timeout_at) {
      error(*timeout_at, why);
    } else if (interval_at) {
      error(*interval_at, why);
    }
  }

  void load_admin(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    AdminConfig& a = cfg.admin;
    if (auto b = as_bool(value)) {
      a.enabled = *b;
      return;
    }
    if (!value.IsMap()) {
      error(where(value, key), "expected true, false or a map");
      return;
    }
    a.enabled = true;
    walk_map(value, value.Mark(),
             {
                 {"listen",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto addr = get_address(v, k, true)) a.listen = std::move(*addr);
                  }},
                 {"token",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto s = get_string(v, k);
                    if (!s) return;
                    if (!is_visible_ascii(*s)) {
                      error(v.Mark(),
                            "admin token may only contain visible ASCII characters "
                            "(no spaces or controls)");
                      return;
                    }
                    if (s->size() < 8) {
                      error(v.Mark(), "admin token must be at least 8 characters long");
                      return;
                    }
                    a.token = *s;
                  }},
                 {"request_timeout",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    auto d = get_duration(v, k);
                    if (!d) return;
                    if (*d > AdminConfig::kIdleTimeout) {
                      error(where(v, k), "admin request_timeout must not exceed " +
                                             ms_text(AdminConfig::kIdleTimeout) +
                                             " (the admin idle timeout)");
                      return;
                    }
                    a.request_timeout = *d;
                  }},
                 {"max_connections_per_ip",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    if (auto i = get_int(v, k, 1, AdminConfig::kMaxConnections))
                      a.max_connections_per_ip = static_cast<uint32_t>(*i);
                  }},
             });
  }

  // {Name: value, Name2: [v1, v2]}: a list adds the header once per value.
  void load_header_map(const YAML::Node& key, const YAML::Node& value,
                       std::vector<HeaderSetting>& out) {
    if (!value.IsMap()) {
      error(where(value, key), "expected a map of header names to values");
      return;
    }
    std::map<std::string, int> seen;  // lower-case name -> 1-based line of its first use
    for (auto it = value.begin(); it != value.end(); ++it) {
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      if (!k.IsScalar()) {
        error(k.Mark(), "expected a string key");
        continue;
      }
      const std::string& name = k.Scalar();
      if (!is_token(name)) {
        error(k.Mark(), "invalid header name '" + name + "' (must be an RFC 7230 token)");
        continue;
      }
      if (is_managed_header(name)) {
        error(k.Mark(), "header '" + name + "' is managed by the proxy and cannot be set");
        continue;
      }
      auto [pos, inserted] = seen.emplace(lower(name), k.Mark().line + 1);
      if (!inserted) {
        error(k.Mark(), "duplicate header '" + name + "' (first at line " +
                            std::to_string(pos->second) +
                            "; names are case-insensitive, use a list for several values)");
        continue;
      }
      auto add = [&](const YAML::Node& n) {
        if (!n.IsScalar()) {
          error(where(n, k), "expected a string");
          return;
        }
        if (!is_header_value(n.Scalar())) {
          error(n.Mark(), "invalid value for header '" + name +
                              "' (only visible ASCII, spaces and tabs: no CR, LF or NUL)");
          return;
        }
        out.push_back(HeaderSetting{name, n.Scalar()});
      };
      if (v.IsScalar()) {
        add(v);
      } else if (v.IsSequence() && v.size() > 0) {
        for (YAML::Node item : v) add(item);
      } else {
        error(where(v, k), "expected a string or a non-empty list of strings");
      }
    }
  }

  void load_headers(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
    walk_map(value, where(value, key),
             {
                 {"handshake",
                  [&](const YAML::Node& k, const YAML::Node& v) {
                    load_header_map(k, v, cfg.headers.handshake);
                  }},
                 {"all", [&](const YAML::Node& k,
                             const YAML::Node& v) { load_header_map(k, v, cfg.headers.all); }},
             });
  }

 private:
  // Positions kept for the checks that need the whole document.
  struct BackendMarks {
    YAML::Mark name;
    std::optional<YAML::Mark> cookie;  // explicit `cookie:` value
    std::vector<YAML::Mark> aliases;   // parallel to BackendConfig::cookie_aliases
  };
  std::vector<BackendMarks> backend_marks_;  // parallel to Config::backends
  bool secret_bad_ = false;
  std::optional<YAML::Mark> server_cookie_at_;
  std::optional<YAML::Mark> server_cookie_name_at_;
  std::optional<YAML::Mark> same_site_none_at_;  // sameSite: none without secure: true
  size_t listen_entries_ = 0;     // listen entries seen, valid or not
  bool listen_all_secure_ = true;  // ... and all of them TLS with secure_cookies

  std::string file_;
  std::filesystem::path base_dir_;  // relative file names in the config are relative to this
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

std::string derive_cookie_value(const std::string& secret, const std::string& backend_name) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  static const unsigned char kNoKey = 0;  // OpenSSL wants a non-null key even when empty
  const void* key = secret.empty() ? static_cast<const void*>(&kNoKey) : secret.data();
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(backend_name.data()), backend_name.size(), mac,
           &mac_len) == nullptr ||
      mac_len < 12) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve(16);
  for (size_t i = 0; i < 12; i += 3) {  // 12 bytes = 4 whole groups: no padding
    const uint32_t group = (static_cast<uint32_t>(mac[i]) << 16) |
                           (static_cast<uint32_t>(mac[i + 1]) << 8) | mac[i + 2];
    out += kAlphabet[(group >> 18) & 63];
    out += kAlphabet[(group >> 12) & 63];
    out += kAlphabet[(group >> 6) & 63];
    out += kAlphabet[group & 63];
  }
  return out;
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
