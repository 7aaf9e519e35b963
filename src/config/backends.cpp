// `backends:`, `balance:` and `health:`, and the backends' persistence values (cookie and
// cookie_aliases), checked once the sticky section is known.

#include "loader.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <map>
#include <stdexcept>

namespace stickyd {

namespace {

constexpr size_t kMaxCookieValue = 64;
// Well under AffinityTable::kMaxBackends, which also has to cover backends removed by reloads.
constexpr size_t kMaxBackendsInConfig = 1024;

}  // namespace

namespace config_detail {

void Loader::load_backends(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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
  for (YAML::Node item : value) load_backend_entry(item, names, cfg);
}

// One entry of `backends:`. `names`: the names seen so far (name -> 1-based line of its first
// definition), for duplicates.
void Loader::load_backend_entry(const YAML::Node& item, std::map<std::string, int>& names,
                                Config& cfg) {
  if (item.IsMap() && item.begin() != item.end() && item.begin()->first.IsScalar() &&
      item.begin()->first.Scalar() == "discover") {
    load_discover_entry(item, cfg);
    return;
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
  if (!is_map) return;
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

// `- discover: {name, type, port, weight, tls, max, hold}` (see discovery.hpp).
void Loader::load_discover_entry(const YAML::Node& item, Config& cfg) {
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
                    {"evict_over",
                     [&](const YAML::Node& k, const YAML::Node& v) {
                       auto e = get_duration(v, k, true);
                       if (!e) return void(ok = false);
                       d.evict_over = *e;
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
void Loader::load_resolvers(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

void Loader::load_balance(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
  if (auto b = get_choice<BalancePolicy>(value, key, "balance",
                                         {{"round_robin", BalancePolicy::RoundRobin},
                                          {"least_conn", BalancePolicy::LeastConn},
                                          {"random", BalancePolicy::Random},
                                          {"hash", BalancePolicy::Hash}}))
    cfg.balance = *b;
}

// Why `value` cannot be a backend's persistence value, or nullopt when it can.
std::optional<std::string> Loader::cookie_value_problem(const std::string& value,
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
void Loader::resolve_backend_cookies(Config& cfg) {
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

void Loader::load_health(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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
               {"evict_over",
                [&](const YAML::Node& k, const YAML::Node& v) {
                  if (auto d = get_duration(v, k, true)) h.evict_over = *d;
                }},
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

}  // namespace config_detail

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

}  // namespace stickyd
