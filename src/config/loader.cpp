// YAML configuration loader: see include/stickyd/config.hpp for the contract.
//
// Every value is checked and every problem is collected (not only the first), each with the
// 1-based line and column of the offending YAML node. Errors are returned in document order.

#include <arpa/inet.h>
#include <netinet/in.h>

#include "loader.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace stickyd {

namespace config_detail {

void Loader::load(const YAML::Node& root, Config& cfg) {
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
void Loader::load_upgrade_protocols(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

void Loader::load_timeouts(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
  std::optional<YAML::Mark> spread_at;
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
            field("drain_idle", cfg.timeouts.drain_idle),
            Field{"close_spread", [&](const YAML::Node& k, const YAML::Node& v) {
                    spread_at = where(v, k);
                    if (auto d = get_duration(v, k, true)) cfg.timeouts.close_spread = *d;
                  }},
            Field{"shutdown_grace", [&cfg, this](const YAML::Node& k, const YAML::Node& v) {
                    if (auto d = get_duration(v, k, true)) cfg.shutdown_grace = *d;
                  }}});
  // Both keys live in this map, in either order: checked once it is read.
  if (spread_at && cfg.timeouts.close_spread && *cfg.timeouts.close_spread > cfg.shutdown_grace)
    error(*spread_at, "close_spread must not exceed shutdown_grace (" +
                          std::to_string(cfg.shutdown_grace.count()) + " ms)");
}

void Loader::load_limits(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

void Loader::load_log(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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
               {"rate_limit",
                [&](const YAML::Node& k, const YAML::Node& v) {
                  if (auto i = get_int(v, k, 0, 1000000)) cfg.log_rate_limit = static_cast<uint32_t>(*i);
                }},
           });
}

void Loader::load_access_log(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

namespace {
bool is_loopback(const SocketAddress& a) {
  if (a.storage.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr) >> 24) == 127;
  if (a.storage.ss_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr);
  return false;
}
}  // namespace

void Loader::load_admin(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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
  std::optional<YAML::Mark> listen_at;
  bool token_given = false;  // even an invalid one (reported on its own)
  walk_map(value, value.Mark(),
           {
               {"listen",
                [&](const YAML::Node& k, const YAML::Node& v) {
                  if (auto addr = get_address(v, k, true)) {
                    a.listen = std::move(*addr);
                    listen_at = v.Mark();
                  }
                }},
               {"token",
                [&](const YAML::Node& k, const YAML::Node& v) {
                  token_given = true;
                  auto s = get_string(v, k);
                  if (!s) return;
                  if (!is_visible_ascii(*s)) {
                    error(v.Mark(),
                          "admin token may only contain visible ASCII characters "
                          "(no spaces or controls)");
                    return;
                  }
                  if (s->size() < 16) {
                    error(v.Mark(), "admin token must be at least 16 characters long");
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
  // The admin API changes routing and reads every session: reachable from other hosts only
  // with a token (a token that failed its own checks has been reported already).
  if (listen_at && !token_given && !is_loopback(a.listen))
    error(*listen_at, "admin.listen '" + a.listen.text +
                          "' is not a loopback address: set admin.token (16 characters or more)");
}

// Browsers drop SameSite=None cookies without Secure. Fine with `secure: true`, or when
// every listener is TLS with secure_cookies (stickyd then adds Secure itself).
// Judged on what the listen entries ask for, so that a listener rejected for another reason
// (say, an unreadable certificate) does not add this error too.
void Loader::check_same_site_none() {
  if (!same_site_none_at_ || (listen_entries_ > 0 && listen_all_secure_)) return;
  error(*same_site_none_at_,
        "sameSite=None requires secure: true (browsers reject it), or every listener on TLS "
        "with secure_cookies");
}

// In insert and rewrite modes the proxy's cookie and the session cookie would be the same
// cookie; in prefix mode, prefixing the session cookie is the whole point.
void Loader::check_server_cookie_name(const Config& cfg) {
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

}  // namespace config_detail

using config_detail::Loader;

namespace {

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
