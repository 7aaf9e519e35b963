// `listen:` entries and TLS: the listeners' `tls:` and the backends' `tls:`, each checked as
// the proxy will set it up.

#include "loader.hpp"

#include "stickyd/tls.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <filesystem>

namespace stickyd {

namespace config_detail {

// `listen:` one entry or a list; an entry is "host:port" or {address, tls}.
void Loader::load_listen(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

void Loader::load_listen_entry(const YAML::Node& item, const YAML::Node& key, Config& cfg) {
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

// ---- TLS ------------------------------------------------------------------------------------

// A file named in the config: relative to the config file's directory, stored absolute.
std::string Loader::resolve_path(const std::string& p) const {
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

std::optional<Loader::PathAt> Loader::get_path(const YAML::Node& value, const YAML::Node& key) {
  auto s = get_string(value, key);
  if (!s) return std::nullopt;
  if (s->empty()) {
    error(where(value, key), "expected a file path");
    return std::nullopt;
  }
  return PathAt{resolve_path(*s), value.Mark(), key.Mark()};
}

// Reports what tls::check_key_pair finds at the `cert` or the `key` node.
bool Loader::check_pair(const PathAt& cert, const PathAt& key) {
  if (auto problem = tls::check_key_pair(cert.path, key.path)) {
    error(problem->role == tls::FileRole::Key ? key.at : cert.at, problem->message);
    return false;
  }
  return true;
}

// `tls:` of a listener. nullopt after reporting errors.
// `secure_cookies`: whether it asks for TLS with secure cookies (set even on errors).
std::optional<TlsServerConfig> Loader::load_tls_server(const YAML::Node& key,
                                                       const YAML::Node& value,
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
std::optional<TlsClientConfig> Loader::load_tls_client(const YAML::Node& key,
                                                       const YAML::Node& value) {
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

}  // namespace config_detail

}  // namespace stickyd
