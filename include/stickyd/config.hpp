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

// TLS towards a backend (`backends[].tls`).
struct TlsClientConfig {
  bool enabled = false;
  std::string ca_file;    // PEM bundle; empty = the system's default trust store
  bool verify = true;     // verify the chain and the name (sni, else the address host)
  std::string sni;        // server name to send and verify; empty = none sent, IP checked
  std::string cert_file;  // optional client certificate (mutual TLS)
  std::string key_file;
  int line = 0, column = 0;  // where `tls:` was written, for errors found later
};

struct BackendConfig {
  std::string name;  // unique, [A-Za-z0-9_.-]+
  SocketAddress address;
  uint32_t weight = 1;
  // The backend's persistence value: in HAProxy-style server cookies and in sid tags.
  // Default: the name; with sticky.secret set, derived from it (see derive_cookie_value).
  // Unique among backends; cookie-octets without the tag separator.
  std::string cookie;
  // Extra values this backend also answers to (e.g. the ones an old HAProxy setup issued).
  std::vector<std::string> cookie_aliases;
  TlsClientConfig tls;
  // Runtime only, never read from YAML: a backend a reload took out of the config. It keeps
  // its slot (backend indexes never change while stickyd runs) and gets no traffic.
  bool removed = false;
  // Runtime only: the `discover` entry (index in Config::discover) this backend was found by,
  // -1 for a backend written in the config; and its identity there (see discovery.hpp).
  int discover = -1;
  std::string identity;
};

// A backend entry that is a DNS name to follow: one backend per A/AAAA address, or per SRV
// target:port (see discovery.hpp).
enum class DiscoverType : uint8_t { A, AAAA, SRV };
struct DiscoverConfig {
  std::string name;                       // the DNS name queried
  DiscoverType type = DiscoverType::A;
  uint16_t port = 0;                      // A/AAAA: required; SRV: the answers say
  uint32_t weight = 1;                    // of every backend it creates
  TlsClientConfig tls;                    // as for static backends (sni: the SRV target)
  uint32_t max = 64;                      // at most this many backends from this entry
  Millis hold{30000};  // a backend gone from DNS is removed after this long with no session
  // A backend gone from DNS (a terminating pod) has its sessions moved off evenly over this
  // (paced eviction; within Kubernetes' default 30 s termination grace); 0: they stay until
  // they end or the node dies.
  Millis evict_over{20000};
  int line = 0, column = 0;
};

// `resolvers:` how discovery asks DNS (c-ares, asynchronous, on the main loop).
struct ResolversConfig {
  std::vector<std::string> nameservers;  // "ip:port" (or "ip", port 53); empty = resolv.conf
  Millis interval{5000};  // re-resolve at least this often (sooner when a TTL expires)
  Millis timeout{1000};   // per query attempt
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
  Millis client_header{10000};     // whole request head must arrive within this (slowloris: 408)
  Millis keepalive{0};             // idle client connection between requests (0 = `client`)
  Millis body_idle{0};             // client silent in the middle of a request body (0 = `client`)
  // SIGTERM: an idle keep-alive connection closes once idle this long since its last response
  // (clients drop idle sockets sooner: Node's agent after 5 s), so none is cut under a request.
  Millis drain_idle{5000};
  // SIGTERM: websocket tunnels still open close evenly over the last `close_spread` of
  // shutdown_grace (nullopt = the whole grace); never > shutdown_grace.
  std::optional<Millis> close_spread;
  Millis keepalive_or_client() const { return keepalive.count() ? keepalive : client; }
  Millis body_idle_or_client() const { return body_idle.count() ? body_idle : client; }
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
  uint32_t max_headers = 100;               // header fields per request; beyond: 431
  uint32_t max_connections = 20000;         // client connections overall; more are refused
  uint32_t max_connections_per_ip = 2000;   // per client address (0 = no limit)
  uint32_t max_pending_backend = 1000;      // connects in progress per backend; beyond: 503
};

enum class LogLevel { Debug, Info, Warn, Error };

struct TlsCertificate {
  std::string cert_file;  // PEM: leaf first, then the chain
  std::string key_file;   // PEM private key matching the leaf
  int line = 0, column = 0;  // of this entry, for errors found when loading the files
};

// TLS termination on a listener (`listen: [{address: ..., tls: {...}}]`).
struct TlsServerConfig {
  // The first is the default; the others are chosen by SNI against the names in their
  // certificates (subjectAltName DNS entries, wildcards included).
  std::vector<TlsCertificate> certificates;
  std::string min_version = "1.2";  // "1.2" or "1.3"; 1.0/1.1 are never offered
  std::string ciphers;       // TLS 1.2 cipher list; empty = a secure default (ECDHE + AEAD)
  std::string ciphersuites;  // TLS 1.3 suites; empty = OpenSSL's default
  bool session_tickets = true;
  Millis ticket_key_rotation{12 * 3600 * 1000};  // new ticket key this often; the last two accepted
  Millis handshake_timeout{10000};
  bool secure_cookies = true;  // Set-Cookie stickyd adds on this listener gets `Secure`
};

struct ListenConfig {
  SocketAddress address;
  std::optional<TlsServerConfig> tls;
  const std::string& text() const { return address.text; }
};

enum class BalancePolicy { RoundRobin, LeastConn, Random, Hash };

enum class ServerCookieMode { Insert, Prefix, Rewrite };

// HAProxy's `cookie <name> insert|prefix|rewrite [indirect] [nocache] [preserve] [httponly]
// [secure] [domain d]* [maxidle t] [maxlife t]`, with the same meanings.
struct ServerCookieConfig {
  bool enabled = false;
  std::string name = "SERVERID";
  ServerCookieMode mode = ServerCookieMode::Insert;
  bool indirect = false;
  bool nocache = false;
  bool preserve = false;
  bool httponly = false;
  bool secure = false;
  std::vector<std::string> domains;
  std::optional<Millis> maxidle;
  std::optional<Millis> maxlife;
};

// Stateless stickiness: the backend is encoded in the sid itself.
struct SidTagConfig {
  bool enabled = false;           // the proxy tags new sids: "<cookie value><separator><sid>"
  std::string separator = ".";    // one char of . ~ ! * : and in no backend value
  // Also route sids that backends tag themselves through Socket.IO's generateId hook
  // ("<cookie value><separator><rest>"), and never re-tag them. Implied by `enabled`.
  bool accept_backend_tags = false;
};

struct StickyConfig {
  ServerCookieConfig server_cookie;
  SidTagConfig tag;
  // HMAC-SHA256 key: when set, every backend's default cookie value is an opaque digest of its
  // name, the same on every replica that shares the key.
  std::string secret;
  bool strict = false;  // session's node down: false = redispatch (default), true = 503
  // Query parameter naming the sid a reconnecting client had (Socket.IO connection state
  // recovery): its handshake goes to that session's node when it may take sessions. "" = off.
  std::string reconnect_hint;
};

struct HealthCheckConfig {
  bool enabled = false;
  std::string method = "GET";
  std::string path;             // empty = an Engine.IO polling handshake on Config::path
  int expect_status = 200;      // 0 = any 2xx/3xx
  Millis interval{2000};
  Millis timeout{1000};
  uint32_t rise = 2;            // consecutive successes to come back up
  uint32_t fall = 3;            // consecutive failures to go down
  Millis slow_start{0};         // weight ramps from ~0 to full over this after coming back
  uint32_t passive_fall = 3;    // consecutive connect failures/resets of real traffic -> down
  // A node marked down may still carry websocket tunnels (it answers, but fails its checks):
  // they are moved off evenly over this (paced eviction), cancelled if it comes back up;
  // 0: they stay open.
  Millis evict_over{30000};
};

struct AdminConfig {
  static constexpr Millis kIdleTimeout{30000};       // idle authenticated connections
  static constexpr uint32_t kMaxConnections = 64;    // open admin connections, all clients
  bool enabled = false;
  SocketAddress listen;   // default 127.0.0.1:9901
  std::string token;      // bearer token required on every admin request; empty = none
  // Unauthenticated connections (all of them without a token): each request must arrive
  // whole within this, counted from the accept or the previous answer (0 < t <= 30 s).
  Millis request_timeout{5000};
  uint32_t max_connections_per_ip = 8;  // open admin connections per client address (1..64)
};

struct HeaderSetting {
  std::string name;
  std::string value;
};

struct ResponseHeadersConfig {
  std::vector<HeaderSetting> handshake;  // added to handshake responses only
  std::vector<HeaderSetting> all;        // added to every proxied response
};

struct Config {
  std::string source;  // file the config came from
  std::vector<ListenConfig> listen;
  std::vector<BackendConfig> backends;
  std::vector<DiscoverConfig> discover;  // `backends:` entries that are `discover: {...}`
  ResolversConfig resolvers;
  std::string path = "/socket.io/";  // always ends with '/', like engine.io normalises it
  CookieConfig cookie;
  Timeouts timeouts;
  AffinityConfig affinity;
  Limits limits;
  LogLevel log_level = LogLevel::Info;
  uint32_t log_rate_limit = 10;  // warn lines per event per second (0 = no limit)
  bool access_log = false;       // one line per request
  bool access_log_json = false;  // ... as a JSON object
  BalancePolicy balance = BalancePolicy::RoundRobin;
  StickyConfig sticky;
  HealthCheckConfig health;
  AdminConfig admin;
  ResponseHeadersConfig headers;
  // Event loops (threads) accepting on the same port with SO_REUSEPORT; 0 = one per core.
  uint32_t workers = 0;
  // Plain (non-TLS) websocket tunnels move bytes with splice(2), kernel-side, on Linux.
  bool tunnel_splice = true;
  // The small writes of one loop iteration go to the kernel in one io_uring_enter (Linux);
  // false, or io_uring unavailable: one write(2) each.
  bool batch_writes = true;
  // Upgrade tokens a client may ask for (RFC 9110 7.8; compared case-insensitively). A
  // request naming any other token is proxied as plain HTTP with the token removed (no h2c
  // smuggling through a tunnel); only a GET can be upgraded.
  std::vector<std::string> upgrade_protocols{"websocket"};
  Millis shutdown_grace{30000};  // SIGTERM: in-flight requests and tunnels get this long
  // Drop privileges after binding (numeric ids resolved at load; -1 = unchanged).
  std::string user, group;
  int64_t uid = -1, gid = -1;
};

// base64url (no padding) of the first 12 bytes of HMAC-SHA256(secret, backend name): 16
// characters, opaque, identical on every replica with the same secret.
std::string derive_cookie_value(const std::string& secret, const std::string& backend_name);

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
