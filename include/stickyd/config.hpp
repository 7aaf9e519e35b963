// Configuration model and YAML loader.
//
// The loader validates everything before anything listens: every problem is reported as
// `FILE:LINE:COL: message` (1-based line and column of the offending YAML node), and a
// config with any error yields no Config at all.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace stickyd {

using Millis = std::chrono::milliseconds;

// A numeric socket address resolved at load time. `text` is what the config said, for logs.
struct SocketAddress {
  std::string text;
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int port() const;
};

struct BackendConfig {
  std::string name;  // unique, [A-Za-z0-9_.-]+
  SocketAddress address;
  uint32_t weight = 1;
};

enum class SameSite { Unset, Strict, Lax, None };
enum class CookieEncode { Uri, None };  // Uri = encodeURIComponent, the `cookie` package default

// Socket.IO's `cookie` server option, with the same names and defaults. `cookie: true` is
// {name: io, path: /, httpOnly: true, sameSite: lax}; an object is merged over those defaults
// exactly as engine.io does (httpOnly defaults to true unless `path: false`).
struct CookieConfig {
  bool inject = false;           // add Set-Cookie on handshakes whose backend did not
  std::string name = "io";       // also the routing key's cookie name when inject is false
  std::optional<std::string> path = std::string("/");  // nullopt when `path: false`
  std::string domain;            // empty = no Domain attribute
  bool http_only = true;
  bool secure = false;
  bool partitioned = false;
  SameSite same_site = SameSite::Lax;
  std::optional<int64_t> max_age;  // seconds, as the `cookie` package writes Max-Age
  std::optional<int64_t> expires;  // unix time, seconds
  std::string priority;           // "", "Low", "Medium", "High"
  CookieEncode encode = CookieEncode::Uri;
};

struct Timeouts {
  Millis connect{5000};            // TCP connect to a backend
  Millis client{60000};            // client silent (idle keep-alive or mid-request)
  Millis server{60000};            // backend silent while a response is due
  Millis tunnel{3600000};          // websocket tunnel with no byte either way
  Millis backend_keepalive{4000};  // idle pooled backend connection; below Node's 5 s default
};

struct AffinityConfig {
  uint32_t max_sessions = 1000000;  // LRU eviction beyond this
  // Idle time after which an unpinned sid is forgotten. nullopt = derive it per session from
  // the open packet: 2 × (pingInterval + pingTimeout); `fallback_idle` when no packet was read.
  std::optional<Millis> idle_timeout;
  Millis fallback_idle{120000};
};

struct Limits {
  uint32_t max_header_size = 32 * 1024;  // whole request head; beyond: 431
  uint32_t max_url_length = 8 * 1024;    // request-target; beyond: 414
  uint32_t max_handshake_body = 16 * 1024;  // handshake response read to learn the sid
};

enum class LogLevel { Debug, Info, Warn, Error };

struct Config {
  std::string source;  // file the config came from
  std::vector<SocketAddress> listen;
  std::vector<BackendConfig> backends;
  std::string path = "/socket.io/";  // always ends with '/', like engine.io normalises it
  CookieConfig cookie;
  Timeouts timeouts;
  AffinityConfig affinity;
  Limits limits;
  LogLevel log_level = LogLevel::Info;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is not tied to a node (e.g. unreadable file)
  int column = 0;  // 1-based
  std::string message;
  std::string to_string() const;  // "file:line:col: message" (or "file: message")
};

struct ConfigResult {
  std::optional<Config> config;  // set only when errors is empty
  std::vector<ConfigError> errors;
};

ConfigResult load_config_file(const std::string& path);
ConfigResult load_config_string(const std::string& yaml, const std::string& name);

// "250ms", "5s", "2m", "1h", "1d", or a bare number of seconds. nullopt when malformed.
std::optional<Millis> parse_duration(const std::string& text);
// "4096", "16k", "16KiB", "1m", "1MiB" (binary multiples). nullopt when malformed.
std::optional<uint64_t> parse_size(const std::string& text);
// "127.0.0.1:80", "[::1]:80", "localhost:80", "name.example:80" (resolved once, now).
// Returns an error message on failure.
std::optional<std::string> parse_socket_address(const std::string& text, SocketAddress& out,
                                                bool allow_port_zero);

}  // namespace stickyd
