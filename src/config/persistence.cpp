// Where and how sessions stick: `path:`, `cookie:`, `affinity:`, `sticky:` (server_cookie,
// tag_sids, backend_tags) and the `headers:` added to responses.

#include <cctype>

#include "loader.hpp"

#include <limits>
#include <map>

namespace stickyd {

namespace {

constexpr std::string_view kTagSeparators = ".~!*:";

}  // namespace

namespace config_detail {

void Loader::load_path(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

void Loader::load_cookie(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

void Loader::load_affinity(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

// ---- sticky ---------------------------------------------------------------------------------

void Loader::load_separator(const YAML::Node& key, const YAML::Node& value, std::string& out) {
  auto s = get_string(value, key);
  if (!s) return;
  if (s->size() != 1 || kTagSeparators.find((*s)[0]) == std::string_view::npos) {
    error(value.Mark(), "invalid separator '" + *s + "' (expected one of . ~ ! * :)");
    return;
  }
  out = *s;
}

void Loader::load_sticky(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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
               {"reconnect_hint",
                [&](const YAML::Node& k, const YAML::Node& v) {
                  if (auto b = as_bool(v); b && !*b) return;  // false: off (the default)
                  auto s = get_string(v, k);
                  if (!s) return;
                  bool ok = !s->empty() && s->size() <= 64;
                  for (char c : *s)
                    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
                  if (!ok) {
                    error(v.Mark(), "reconnect_hint must be a query parameter name ([A-Za-z0-9_.-], at most 64)");
                    return;
                  }
                  if (*s == "sid" || *s == "EIO" || *s == "transport" || *s == "t" || *s == "b64") {
                    error(v.Mark(), "reconnect_hint '" + *s + "' is an Engine.IO parameter: choose another name, e.g. prev_sid");
                    return;
                  }
                  st.reconnect_hint = *s;
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
SidTagConfig Loader::load_tag_sids(const YAML::Node& key, const YAML::Node& value) {
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
SidTagConfig Loader::load_backend_tags(const YAML::Node& key, const YAML::Node& value) {
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

void Loader::load_server_cookie(const YAML::Node& key, const YAML::Node& value,
                                ServerCookieConfig& sc) {
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

// ---- headers --------------------------------------------------------------------------------

// {Name: value, Name2: [v1, v2]}: a list adds the header once per value.
void Loader::load_header_map(const YAML::Node& key, const YAML::Node& value,
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

void Loader::load_headers(const YAML::Node& key, const YAML::Node& value, Config& cfg) {
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

}  // namespace config_detail

}  // namespace stickyd
