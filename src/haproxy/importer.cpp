// import_haproxy: HAProxy keywords -> stickyd settings. Meanings and defaults follow HAProxy's
// configuration manual; where stickyd has no equivalent, the line is kept as a comment that
// says why, so nothing an operator relied on disappears silently.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "stickyd/haproxy_import.hpp"

namespace stickyd::haproxy {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A duration as stickyd writes it (HAProxy's bare numbers are milliseconds, stickyd's seconds).
std::string duration(long long ms) {
  if (ms > 0 && ms % 86400000 == 0) return std::to_string(ms / 86400000) + "d";
  if (ms > 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms > 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// A YAML double-quoted scalar.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      static const char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

bool digits(std::string_view s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// stickyd backend names are [A-Za-z0-9_.-]+.
std::string backend_name(std::string_view s) {
  std::string out;
  for (char c : s)
    out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ? c : '_');
  return out.empty() ? std::string("server") : out;
}

// "host:port" forms HAProxy accepts for bind and server addresses, as stickyd writes them;
// "" when stickyd has no equivalent (unix sockets, port ranges, no port).
std::string address(std::string a, bool bind) {
  for (const char* p : {"ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"})
    if (a.rfind(p, 0) == 0) a.erase(0, std::char_traits<char>::length(p));
  if (a.find('@') != std::string::npos) return "";  // unix@, abns@, fd@, sockpair@, ...
  size_t colon = a.rfind(':');
  if (colon == std::string::npos) return "";
  std::string host = a.substr(0, colon), port = a.substr(colon + 1);
  if (!digits(port)) return "";  // a range (80-81) or an offset (+1)
  if (host.empty() || host == "*") host = bind ? "0.0.0.0" : "";
  if (host.empty()) return "";
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return host + ":" + port;
}

struct Server {
  std::string name, address, cookie;
  std::string weight;
  bool check = false, disabled = false;
  // Backend TLS.
  bool ssl = false;
  std::string verify, ca, sni, crt;
  std::vector<std::string> ignored;
  int line = 0;
  std::string resolvers;  // `resolvers NAME`
  std::string discover;   // server-template: a discover entry instead
};

struct Listen {
  std::string address;
  std::vector<std::string> certs;  // TLS listener certificates (combined PEM files)
  int line = 0;
};

class Importer {
 public:
  Importer(const ParseResult& p, const ImportOptions& o) : p_(p), o_(o) {}

  ImportResult run() {
    ImportResult r;
    const Section* be = pick_backend(r);
    if (!be) return r;
    backend_ = be->name;
    // What the chosen backend and its frontends inherit.
    std::set<const Section*> used;
    for (const Section& s : p_.sections)
      if (s.kind == "global") {
        apply(s, Ctx::Global);
        used.insert(&s);
      }
    if (const Section* d = defaults_of(*be)) {
      apply(*d, Ctx::Defaults);
      used.insert(d);
    }
    for (const Section& s : p_.sections) {
      // Frontends, and listen sections used as one, that send requests to it.
      if ((s.kind != "frontend" && s.kind != "listen") || &s == be || !routes_to(s, be->name)) continue;
      if (const Section* d = defaults_of(s); d && !used.count(d)) {
        apply(*d, Ctx::Defaults);
        used.insert(d);
      }
      apply(s, Ctx::Frontend);
      used.insert(&s);
    }
    apply(*be, be->kind == "listen" ? Ctx::Listen : Ctx::Backend);
    used.insert(be);
    for (const Section& s : p_.sections) {
      if (used.count(&s)) continue;
      if (s.kind == "resolvers" && resolvers_used_.count(s.name)) {
        apply_resolvers(s);
        continue;
      }
      std::string why = s.kind == "backend" || s.kind == "listen" || s.kind == "frontend"
                            ? "not the imported Socket.IO backend '" + backend_ + "' or a frontend of it"
                            : "section '" + s.kind + "' has no stickyd equivalent";
      unmapped(s.line, s.kind + (s.name.empty() ? "" : " " + s.name), why);
      for (const Line& l : s.lines) unmapped(l, why);
    }
    if (servers_.empty()) {
      r.error = o_.file + ": backend '" + backend_ + "' has no usable server";
      return r;
    }
    r.yaml = render();
    r.ok = true;
    r.mapped = mapped_;
    r.unmapped = unmapped_;
    return r;
  }

 private:
  enum class Ctx { Global, Defaults, Frontend, Backend, Listen };

  const Section* pick_backend(ImportResult& r) {
    std::vector<const Section*> with_servers, named;
    for (const Section& s : p_.sections) {
      if (s.kind != "backend" && s.kind != "listen") continue;
      if (!o_.backend.empty() && s.name == o_.backend) named.push_back(&s);
      for (const Line& l : s.lines) {
        std::string k = lower(l.words[0]);
        if (k == "server" || k == "server-template") {
          with_servers.push_back(&s);
          break;
        }
      }
    }
    if (!o_.backend.empty()) {
      if (named.empty()) {
        r.error = o_.file + ": no backend or listen section named '" + o_.backend + "'";
        return nullptr;
      }
      return named.front();
    }
    if (with_servers.size() == 1) return with_servers.front();
    if (with_servers.empty()) {
      r.error = o_.file + ": no backend or listen section with servers";
      return nullptr;
    }
    // Several: the one with cookie persistence is the Socket.IO one, if only one has it.
    std::vector<const Section*> with_cookie;
    for (const Section* s : with_servers)
      for (const Line& l : s->lines)
        if (lower(l.words[0]) == "cookie") {
          with_cookie.push_back(s);
          break;
        }
    if (with_cookie.size() == 1) return with_cookie.front();
    // Else the one the frontends send requests to by default, if only one is.
    std::vector<const Section*> defaulted;
    for (const Section* s : with_servers)
      for (const Section& fe : p_.sections) {
        bool is_default = false;
        if (fe.kind == "frontend" || fe.kind == "listen")
          for (const Line& l : fe.lines)
            if (lower(l.words[0]) == "default_backend" && l.words.size() >= 2 && l.words[1] == s->name) is_default = true;
        if (is_default) {
          defaulted.push_back(s);
          break;
        }
      }
    if (defaulted.size() == 1) return defaulted.front();
    std::string names;
    for (const Section* s : with_servers) names += (names.empty() ? "" : ", ") + s->name;
    r.error = o_.file + ":" + std::to_string(with_servers[1]->line) + ": several backends with servers (" +
              names + "): choose the Socket.IO one with --backend NAME";
    return nullptr;
  }

  // The defaults a proxy section inherits: `from NAME`, else the last defaults before it.
  const Section* defaults_of(const Section& s) const {
    const Section* last = nullptr;
    for (const Section& d : p_.sections) {
      if (&d == &s) break;
      if (d.kind != "defaults") continue;
      if (!s.from.empty() ? d.name == s.from : true) last = &d;
    }
    return last;
  }

  bool routes_to(const Section& fe, const std::string& be) const {
    for (const Line& l : fe.lines) {
      std::string k = lower(l.words[0]);
      if ((k == "default_backend" || k == "use_backend") && l.words.size() >= 2 && l.words[1] == be) return true;
    }
    return false;
  }

  void mapped(const Line& l, std::string note = "") {
    ++mapped_;
    if (!note.empty()) notes_.push_back(o_.file + ":" + std::to_string(l.number) + " " + l.text + "  -- " + note);
  }
  void unmapped(const Line& l, const std::string& why) { unmapped(l.number, l.text, why); }
  void unmapped(int line, const std::string& text, const std::string& why) {
    ++unmapped_;
    kept_.push_back(o_.file + ":" + std::to_string(line) + " " + text + "  -- " + why);
  }

  void apply(const Section& s, Ctx ctx) {
    for (const Line& l : s.lines) apply_line(l, ctx);
    if (s.kind == "listen")
      for (const std::string& a : s.args) add_bind(a, {}, s.line);
  }

  void add_bind(const std::string& spec, const std::vector<std::string>& certs, int line) {
    size_t start = 0;
    for (;;) {  // "a:1,b:2" binds several addresses
      size_t comma = spec.find(',', start);
      std::string one = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      std::string a = address(one, true);
      if (!a.empty()) listens_.push_back({a, certs, line});
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }

  void apply_line(const Line& l, Ctx ctx) {
    const std::vector<std::string>& w = l.words;
    std::string k = lower(w[0]);
    const bool proxy = ctx != Ctx::Global;
    if (ctx == Ctx::Global) {
      if (k == "maxconn" && w.size() == 2 && digits(w[1])) return set(max_connections_, w[1], l);
      if (k == "nbthread" && w.size() == 2 && digits(w[1])) return set(workers_, w[1], l);
      if ((k == "user" || k == "group") && w.size() == 2) return set(k == "user" ? user_ : group_, w[1], l);
      if (k == "daemon" || k == "master-worker")
        return unmapped(l, "stickyd runs in the foreground; let systemd supervise it (the package's unit)");
      if (k == "pidfile") return unmapped(l, "use stickyd's --pid-file");
      if (k == "stats") return unmapped(l, "stickyd's runtime API is the admin API (admin:)");
      if (k == "log" || k == "log-send-hostname" || k == "log-tag")
        return unmapped(l, "stickyd logs to stderr (journald under systemd)");
      return unmapped(l, "global setting with no stickyd equivalent");
    }
    if (k == "mode") {
      if (w.size() == 2 && lower(w[1]) == "http") return mapped(l);
      return unmapped(l, "stickyd proxies HTTP/1.1 and websockets only");
    }
    if (k == "bind" && (ctx == Ctx::Frontend || ctx == Ctx::Listen) && w.size() >= 2) return bind(l);
    if (k == "default_backend" || k == "use_backend") {
      if (w.size() >= 2 && w[1] == backend_) {
        if (w.size() > 2) return mapped(l, "its condition is ignored: every request goes to this backend");
        return mapped(l);
      }
      return unmapped(l, "routing to another backend: stickyd serves one Socket.IO cluster");
    }
    if (k == "balance" && w.size() >= 2) return balance(l);
    if (k == "cookie" && w.size() >= 2) return cookie(l);
    if (k == "dynamic-cookie-key")
      return unmapped(l, "HAProxy's dynamic cookie values hash this key with each server's address; stickyd's "
                         "values are fixed per backend (`cookie:`, or derived with sticky.secret)");
    if (k == "server" && w.size() >= 3) return server(l, w[1], w[2], 3);
    if (k == "default-server") return default_server(l);
    if (k == "server-template" && w.size() >= 4) return server_template(l);
    if (k == "timeout" && w.size() == 3) return timeout(l, lower(w[1]), w[2]);
    if ((k == "contimeout" || k == "clitimeout" || k == "srvtimeout") && w.size() == 2)
      return timeout(l, k == "contimeout" ? "connect" : k == "clitimeout" ? "client" : "server", w[1]);
    if (k == "option" && w.size() >= 2) return option(l);
    if (k == "no" && w.size() >= 3 && lower(w[1]) == "option") return unmapped(l, "a 'no option' has no stickyd equivalent");
    if (k == "http-check" && w.size() >= 2) return http_check(l);
    if (k == "http-response" && w.size() >= 4 &&
        (lower(w[1]) == "set-header" || lower(w[1]) == "add-header")) return response_header(l);
    if (k == "retries") return mapped(l, "stickyd retries a bodyless request once when a pooled connection was closed under it");
    if (k == "maxconn" && proxy) return unmapped(l, "per-proxy maxconn: stickyd has limits.max_connections (process-wide)");
    if (k == "log") return unmapped(l, "stickyd logs to stderr; access_log: true for one line per request");
    if (k == "acl" || k == "http-request" || k == "tcp-request" || k == "capture")
      return unmapped(l, "request rules and ACLs have no stickyd equivalent");
    if (k == "stick-table" || k == "stick")
      return unmapped(l, "stickyd keeps its own sid table (learnt from handshakes, pinned for websockets): no stick table is needed");
    if (k == "stats") return unmapped(l, "stickyd's statistics are the admin API and /metrics");
    return unmapped(l, "no stickyd equivalent");
  }

  template <typename T>
  void set(T& field, const std::string& v, const Line& l) {
    field = v;
    mapped(l);
  }

  void bind(const Line& l) {
    const std::vector<std::string>& w = l.words;
    std::vector<std::string> certs, ignored;
    bool ssl = false;
    for (size_t i = 2; i < w.size(); ++i) {
      std::string p = lower(w[i]);
      if (p == "ssl") {
        ssl = true;
      } else if (p == "crt" && i + 1 < w.size()) {
        add_certs(w[++i], certs);
      } else if (p == "alpn" && i + 1 < w.size()) {
        ++i;
        ignored.push_back("alpn (stickyd offers http/1.1)");
      } else {
        ignored.push_back(w[i]);
      }
    }
    if (ssl && certs.empty()) return unmapped(l, "ssl without a certificate stickyd can read");
    size_t before = listens_.size();
    add_bind(w[1], ssl ? certs : std::vector<std::string>{}, l.number);
    if (listens_.size() == before) return unmapped(l, "an address stickyd cannot listen on (unix socket, port range, no port)");
    std::string note;
    for (const std::string& s : ignored) note += (note.empty() ? "ignored: " : ", ") + s;
    mapped(l, note);
  }

  // `crt` names a PEM file (certificate, chain and key) or a directory of them.
  void add_certs(const std::string& path, std::vector<std::string>& certs) {
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      std::vector<std::string> files;
      if (DIR* d = ::opendir(path.c_str())) {
        while (dirent* e = ::readdir(d)) {
          std::string n = e->d_name;
          if (n.size() > 4 && (n.ends_with(".pem") || n.ends_with(".crt"))) files.push_back(path + "/" + n);
        }
        ::closedir(d);
      }
      std::sort(files.begin(), files.end());
      certs.insert(certs.end(), files.begin(), files.end());
      return;
    }
    certs.push_back(path);
  }

  void balance(const Line& l) {
    std::string a = lower(l.words[1]);
    if (a == "roundrobin" || a == "static-rr") return set(balance_, std::string("round_robin"), l);
    if (a == "leastconn") return set(balance_, std::string("least_conn"), l);
    if (a == "random") return set(balance_, std::string("random"), l);
    if (a == "source") {
      balance_ = "hash";
      return mapped(l, "hash of the client address with bounded loads");
    }
    balance_ = "round_robin";
    mapped(l, "'" + a + "' has no stickyd equivalent: round_robin for new sessions (a session's "
                        "requests follow its sid whatever the policy)");
  }

  void cookie(const Line& l) {
    const std::vector<std::string>& w = l.words;
    cookie_name_ = w[1];
    std::vector<std::string> ignored;
    for (size_t i = 2; i < w.size(); ++i) {
      std::string p = lower(w[i]);
      if (p == "insert" || p == "prefix" || p == "rewrite") {
        cookie_mode_ = p;
      } else if (p == "indirect" || p == "nocache" || p == "preserve" || p == "httponly" || p == "secure") {
        cookie_flags_.insert(p);
      } else if (p == "domain" && i + 1 < w.size()) {
        cookie_domains_.push_back(w[++i]);
      } else if ((p == "maxidle" || p == "maxlife") && i + 1 < w.size()) {
        // HAProxy reads these in seconds unless a unit is given.
        std::string v = w[++i];
        std::optional<long long> ms = haproxy_time_ms(digits(v) ? v + "s" : v);
        if (ms) (p == "maxidle" ? cookie_maxidle_ : cookie_maxlife_) = duration(*ms);
        else ignored.push_back(p + " " + v + " (not a time)");
      } else if (p == "dynamic") {
        ignored.push_back("dynamic (values are fixed per backend in stickyd: clients holding a dynamic "
                          "cookie are balanced again once)");
      } else {
        ignored.push_back(w[i]);
      }
    }
    std::string note;
    if (cookie_mode_.empty()) {
      cookie_mode_ = "rewrite";
      note = "no mode given: the application sets the cookie with the server's value, which 'rewrite' keeps";
    }
    for (const std::string& s : ignored) note += (note.empty() ? "ignored: " : "; ignored: ") + s;
    mapped(l, note);
  }

  // Server parameters shared by server, default-server and server-template.
  void server_params(Server& s, const std::vector<std::string>& w, size_t i) {
    for (; i < w.size(); ++i) {
      std::string p = lower(w[i]);
      auto arg = [&]() -> std::string { return i + 1 < w.size() ? w[++i] : std::string(); };
      if (p == "weight") s.weight = arg();
      else if (p == "cookie") s.cookie = arg();
      else if (p == "check") s.check = true;
      else if (p == "no-check") s.check = false;
      else if (p == "disabled") s.disabled = true;
      else if (p == "enabled") s.disabled = false;
      else if (p == "inter") set_ms(inter_ms_, arg(), s);
      else if (p == "rise") rise_ = arg();
      else if (p == "fall") fall_ = arg();
      else if (p == "slowstart") set_ms(slowstart_ms_, arg(), s);
      else if (p == "ssl") s.ssl = true;
      else if (p == "verify") s.verify = lower(arg());
      else if (p == "ca-file") s.ca = arg();
      else if (p == "crt") s.crt = arg();
      else if (p == "sni") {
        std::string e = arg();
        if (e.rfind("str(", 0) == 0 && e.back() == ')') s.sni = e.substr(4, e.size() - 5);
        else s.ignored.push_back("sni " + e + " (only str(...) maps)");
      } else if (p == "resolvers") resolvers_used_.insert(s.resolvers = arg());
      else if (p == "backup") s.ignored.push_back("backup (stickyd has no backup servers: it takes sessions like the others)");
      else if (p == "on-marked-down" && i + 1 < w.size() && lower(w[i + 1]) == "shutdown-sessions") {
        ++i;
        shutdown_sessions_ = true;
      } else if (p == "on-marked-down" || p == "on-marked-up" || p == "init-addr" || p == "port" ||
               p == "addr" || p == "maxconn" || p == "fastinter" || p == "downinter" || p == "agent-check" ||
               p == "agent-port" || p == "agent-inter" || p == "check-ssl" || p == "resolve-prefer" ||
               p == "observe" || p == "error-limit" || p == "maxqueue" || p == "minconn" || p == "id") {
        std::string v = p == "check-ssl" || p == "agent-check" ? "" : arg();
        s.ignored.push_back(p + (v.empty() ? "" : " " + v));
      } else {
        s.ignored.push_back(w[i]);
      }
    }
  }

  void set_ms(long long& field, const std::string& v, Server& s) {
    if (std::optional<long long> ms = haproxy_time_ms(v)) field = *ms;
    else s.ignored.push_back(v + " (not a time)");
  }

  void default_server(const Line& l) {
    Server d;
    server_params(d, l.words, 1);
    defaults_ = d;
    mapped(l, join_ignored(d));
  }

  std::string join_ignored(const Server& s) const {
    std::string note;
    for (const std::string& x : s.ignored) note += (note.empty() ? "ignored: " : ", ") + x;
    return note;
  }

  void server(const Line& l, const std::string& name, const std::string& addr, size_t params) {
    Server s = defaults_;
    s.ignored.clear();
    s.line = l.number;
    s.name = backend_name(name);
    s.address = address(addr, false);
    if (s.address.empty()) return unmapped(l, "an address stickyd cannot reach (unix socket, no port)");
    server_params(s, l.words, params);
    std::string note = join_ignored(s);
    if (s.name != name) note += (note.empty() ? "" : "; ") + std::string("renamed ") + s.name;
    if (!s.resolvers.empty())
      note += (note.empty() ? "" : "; ") + std::string("resolvers: the address is resolved once at start; "
                                                       "use a discover: entry to follow DNS");
    servers_.push_back(s);
    mapped(l, note);
  }

  // server-template <prefix> <num | range> <fqdn>:<port> [params]: DNS discovery.
  void server_template(const Line& l) {
    const std::vector<std::string>& w = l.words;
    Server s = defaults_;
    s.ignored.clear();
    s.line = l.number;
    server_params(s, w, 4);
    size_t colon = w[3].rfind(':');
    std::string fqdn = colon == std::string::npos ? w[3] : w[3].substr(0, colon);
    std::string port = colon == std::string::npos ? "" : w[3].substr(colon + 1);
    bool srv = !fqdn.empty() && fqdn[0] == '_';
    if (!srv && !digits(port)) return unmapped(l, "an A/AAAA template needs a port");
    std::string max = w[2];
    size_t dash = max.find('-');
    if (dash != std::string::npos) {  // a range "1-10": how many
      std::string a = max.substr(0, dash), b = max.substr(dash + 1);
      max = digits(a) && digits(b) && std::stoi(b) >= std::stoi(a) ? std::to_string(std::stoi(b) - std::stoi(a) + 1) : "";
    }
    if (!digits(max)) return unmapped(l, "not a server count");
    std::string d = "{name: " + quoted(fqdn) + ", type: " + (srv ? "SRV" : "A");
    if (!srv) d += ", port: " + port;
    d += ", max: " + max;
    if (!s.weight.empty() && digits(s.weight)) d += ", weight: " + s.weight;
    d += "}";
    s.discover = d;
    servers_.push_back(s);
    std::string note = join_ignored(s);
    note += (note.empty() ? "" : "; ") + std::string("backend names derive from each address (10.0.0.5_3000): "
                                                     "HAProxy's template names and cookies do not carry over");
    mapped(l, note);
  }

  void timeout(const Line& l, const std::string& which, const std::string& value) {
    std::optional<long long> ms = haproxy_time_ms(value);
    if (!ms) return unmapped(l, "not a time");
    static const std::map<std::string, std::string> kKeys = {
        {"connect", "connect"},       {"client", "client"},          {"server", "server"},
        {"tunnel", "tunnel"},         {"http-request", "client_header"}, {"http-keep-alive", "keepalive"},
        {"check", "check"}};
    auto it = kKeys.find(which);
    if (it == kKeys.end())
      return unmapped(l, which == "client-fin" || which == "server-fin"
                             ? "stickyd closes a half-closed side with the other (tunnel: timeouts.tunnel)"
                             : "no stickyd timeout of that kind");
    if (it->second == "check") check_timeout_ms_ = *ms;
    else timeouts_[it->second] = duration(*ms);
    mapped(l);
  }

  void option(const Line& l) {
    const std::vector<std::string>& w = l.words;
    std::string o = lower(w[1]);
    if (o == "httpchk") {
      // option httpchk [<method>] [<uri>] [<version>], or just <uri>.
      if (w.size() == 3) {
        check_path_ = w[2];
      } else if (w.size() >= 4) {
        check_method_ = w[2];
        check_path_ = w[3];
      }
      httpchk_ = true;
      return mapped(l);
    }
    if (o == "redispatch") {
      on_down_ = "redispatch";
      return mapped(l, "a session whose node is down gets Engine.IO's 400 code 1 and re-handshakes elsewhere");
    }
    if (o == "forwardfor") return mapped(l, "stickyd always appends X-Forwarded-For");
    if (o == "httplog") {
      access_log_ = true;
      return mapped(l, "access_log: true");
    }
    if (o == "http-server-close" || o == "http-keep-alive" || o == "httpclose" || o == "http-pretend-keepalive")
      return mapped(l, "stickyd keeps connections alive on both sides and routes each request by itself");
    return unmapped(l, "option with no stickyd equivalent");
  }

  void http_check(const Line& l) {
    const std::vector<std::string>& w = l.words;
    std::string k = lower(w[1]);
    if (k == "expect" && w.size() >= 4 && lower(w[2]) == "status" && digits(w[3])) {
      expect_status_ = w[3];
      return mapped(l);
    }
    if (k == "send") {  // http-check send meth HEAD uri /health [ver ...] [hdr ...]
      for (size_t i = 2; i + 1 < w.size(); i += 2) {
        std::string p = lower(w[i]);
        if (p == "meth") check_method_ = w[i + 1];
        else if (p == "uri") check_path_ = w[i + 1];
      }
      return mapped(l);
    }
    unmapped(l, "health checks in stickyd: one request, one expected status");
  }

  void response_header(const Line& l) {
    const std::vector<std::string>& w = l.words;
    if (w.size() > 4) return unmapped(l, "a conditional header rule: stickyd's headers are unconditional");
    if (w[3].find('%') != std::string::npos) return unmapped(l, "a log-format value: stickyd's header values are fixed");
    headers_.emplace_back(w[2], w[3]);
    mapped(l);
  }

  void apply_resolvers(const Section& s) {
    for (const Line& l : s.lines) {
      std::string k = lower(l.words[0]);
      if (k == "nameserver" && l.words.size() >= 3) {
        std::string a = address(l.words[2], false);
        if (a.empty()) {
          unmapped(l, "not an ip:port nameserver");
          continue;
        }
        nameservers_.push_back(a);
        mapped(l);
      } else if (k == "hold" && l.words.size() >= 3 && lower(l.words[1]) == "valid") {
        if (auto ms = haproxy_time_ms(l.words[2])) resolve_interval_ = duration(std::max(*ms, 1000LL));
        mapped(l, "resolvers.interval");
      } else if (k == "parse-resolv-conf") {
        mapped(l, "stickyd reads /etc/resolv.conf when no nameserver is given");
      } else {
        unmapped(l, "no stickyd resolver setting of that kind");
      }
    }
  }

  std::string render() const {
    std::string y;
    y += comment_text("# stickyd configuration imported from " + o_.file + " by `stickyd import-haproxy` (backend '" +
                      backend_ + "').") + "\n";
    y += "# Check it with `stickyd --check -c FILE`. HAProxy lines with no stickyd equivalent are kept\n";
    y += "# as comments at the end, each with its line and why.\n";
    if (listens_.empty()) {
      y += comment_text("# No frontend routes to '" + backend_ + "': listening on a loopback port; edit it.") + "\n";
      y += "listen: 127.0.0.1:8080\n";
    } else {
      y += "listen:\n";
      std::set<std::string> seen;
      for (const Listen& l : listens_) {
        if (!seen.insert(l.address).second) continue;
        y += "  - ";
        if (l.certs.empty()) {
          y += quoted(l.address);
        } else {
          y += "{address: " + quoted(l.address) + ", tls: {certificates: [";
          for (size_t i = 0; i < l.certs.size(); ++i)
            y += (i ? ", " : "") + std::string("{cert: ") + quoted(l.certs[i]) + ", key: " + quoted(l.certs[i]) + "}";
          y += "]}}";
        }
        y += "    # " + comment_text(o_.file) + ":" + std::to_string(l.line) + "\n";
      }
    }
    y += "backends:\n";
    for (const Server& s : servers_) {
      if (!s.discover.empty()) {
        y += "  - discover: " + s.discover + "    # " + comment_text(o_.file) + ":" + std::to_string(s.line) + "\n";
        continue;
      }
      y += "  - {name: " + quoted(s.name) + ", address: " + quoted(s.address);
      std::string weight = s.weight;
      if (s.disabled) weight = "0";
      if (!weight.empty() && digits(weight)) y += ", weight: " + weight;
      if (!s.cookie.empty()) y += ", cookie: " + quoted(s.cookie);
      if (s.ssl) {
        y += ", tls: {verify: ";
        y += s.verify == "none" ? "false" : "true";
        if (!s.ca.empty()) y += ", ca: " + quoted(s.ca);
        if (!s.sni.empty()) y += ", sni: " + quoted(s.sni);
        if (!s.crt.empty()) y += ", cert: " + quoted(s.crt) + ", key: " + quoted(s.crt);
        y += "}";
      }
      y += "}    # " + comment_text(o_.file) + ":" + std::to_string(s.line) + (s.disabled ? " (disabled: weight 0, no new sessions)" : "") + "\n";
    }
    if (!balance_.empty()) y += "balance: " + balance_ + "\n";
    y += "sticky:\n";
    if (shutdown_sessions_)
      y += "  # on-marked-down shutdown-sessions: a down node's polling sessions get Engine.IO's\n"
           "  # 400 code 1 at once; its websocket tunnels are closed over health.evict_over (30 s)\n"
           "  # rather than all in the same second, if it still answers; at once if it does not.\n";
    if (on_down_.empty())
      y += "  # HAProxy without 'option redispatch' answers 503 when a session's server is down;\n"
           "  # stickyd answers Engine.IO's 400 code 1 so the client re-handshakes at once\n"
           "  # (on_down: strict keeps HAProxy's 503).\n";
    y += "  on_down: redispatch\n";
    if (!cookie_name_.empty()) {
      y += "  server_cookie: {name: " + quoted(cookie_name_) + ", mode: " + cookie_mode_;
      for (const char* f : {"indirect", "nocache", "preserve", "httponly", "secure"})
        if (cookie_flags_.count(f)) y += std::string(", ") + f + ": true";
      if (cookie_domains_.size() == 1) y += ", domain: " + quoted(cookie_domains_[0]);
      if (cookie_domains_.size() > 1) {
        y += ", domain: [";
        for (size_t i = 0; i < cookie_domains_.size(); ++i) y += (i ? ", " : "") + quoted(cookie_domains_[i]);
        y += "]";
      }
      if (!cookie_maxidle_.empty()) y += ", maxidle: " + cookie_maxidle_;
      if (!cookie_maxlife_.empty()) y += ", maxlife: " + cookie_maxlife_;
      y += "}\n";
    }
    if (!timeouts_.empty()) {
      y += "timeouts:\n";
      for (const auto& [k, v] : timeouts_) y += "  " + k + ": " + v + "\n";
    }
    bool check = std::any_of(servers_.begin(), servers_.end(), [](const Server& s) { return s.check; });
    if (check) {
      y += "health:\n";
      if (!httpchk_)
        y += "  # HAProxy checked TCP connects; stickyd's check is an HTTP request (default: an\n"
             "  # Engine.IO handshake on `path`; a dedicated route such as /health is cheaper).\n";
      if (!check_method_.empty()) y += "  method: " + quoted(check_method_) + "\n";
      if (!check_path_.empty()) y += "  path: " + quoted(check_path_) + "\n";
      if (!expect_status_.empty()) y += "  expect_status: " + expect_status_ + "\n";
      // HAProxy: inter 2 s; a check's timeout is `timeout check`, else inter. stickyd's check
      // timeout may not exceed its interval.
      long long interval = inter_ms_ > 0 ? inter_ms_ : 2000;
      long long to = check_timeout_ms_ > 0 ? std::min(check_timeout_ms_, interval) : interval;
      y += "  interval: " + duration(interval) + "\n";
      y += "  timeout: " + duration(to) + "\n";
      if (!rise_.empty() && digits(rise_)) y += "  rise: " + rise_ + "\n";
      if (!fall_.empty() && digits(fall_)) y += "  fall: " + fall_ + "\n";
      if (slowstart_ms_ > 0) y += "  slow_start: " + duration(slowstart_ms_) + "\n";
    }
    if (!nameservers_.empty() || !resolve_interval_.empty()) {
      y += "resolvers:\n";
      if (!nameservers_.empty()) {
        y += "  nameservers: [";
        for (size_t i = 0; i < nameservers_.size(); ++i) y += (i ? ", " : "") + quoted(nameservers_[i]);
        y += "]\n";
      }
      if (!resolve_interval_.empty()) y += "  interval: " + resolve_interval_ + "\n";
    }
    if (!max_connections_.empty()) y += "limits: {max_connections: " + max_connections_ + "}\n";
    if (!workers_.empty()) y += "workers: " + workers_ + "\n";
    if (!user_.empty()) y += "user: " + quoted(user_) + "\n";
    if (!group_.empty()) y += "group: " + quoted(group_) + "\n";
    if (access_log_) y += "access_log: true\n";
    if (!headers_.empty()) {
      y += "headers:\n  all:\n";
      for (const auto& [k, v] : headers_) y += "    " + quoted(k) + ": " + quoted(v) + "\n";
    }
    if (!notes_.empty()) {
      y += "\n# Mapped with a remark:\n";
      for (const std::string& n : notes_) y += "#   " + comment_text(n) + "\n";
    }
    if (!kept_.empty()) {
      y += "\n# Not mapped (no stickyd equivalent):\n";
      for (const std::string& n : kept_) y += "#   " + comment_text(n) + "\n";
    }
    return y;
  }

  // A comment stays one line whatever the HAProxy line held.
  static std::string comment_text(const std::string& s) {
    std::string out;
    for (unsigned char c : s) out.push_back(c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c));
    return out;
  }

  const ParseResult& p_;
  const ImportOptions& o_;
  std::string backend_;
  size_t mapped_ = 0, unmapped_ = 0;
  std::vector<std::string> notes_, kept_;
  std::vector<Listen> listens_;
  std::vector<Server> servers_;
  Server defaults_;
  std::set<std::string> resolvers_used_;
  std::string balance_, on_down_, cookie_name_, cookie_mode_, cookie_maxidle_, cookie_maxlife_;
  std::set<std::string> cookie_flags_;
  std::vector<std::string> cookie_domains_;
  std::map<std::string, std::string> timeouts_;
  std::string check_method_, check_path_, expect_status_, rise_, fall_;
  long long inter_ms_ = 0, check_timeout_ms_ = 0, slowstart_ms_ = 0;
  bool httpchk_ = false, access_log_ = false, shutdown_sessions_ = false;
  std::vector<std::string> nameservers_;
  std::string resolve_interval_;
  std::string max_connections_, workers_, user_, group_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

}  // namespace

ImportResult import_haproxy(std::string_view text, const ImportOptions& opts, const EnvFn& env) {
  ParseResult p = parse_haproxy(text, env);
  if (p.error_line) {
    ImportResult r;
    r.error = opts.file + ":" + std::to_string(p.error_line) + ": " + p.error;
    return r;
  }
  ImportResult r = Importer(p, opts).run();
  if (r.ok && !p.notes.empty()) {
    std::string head;
    for (const std::string& n : p.notes) {
      r.warnings.push_back(opts.file + ": " + n);
      head += "# Warning: " + n + "\n";
    }
    r.yaml = head + r.yaml;
  }
  return r;
}

}  // namespace stickyd::haproxy
