#include "stickyd/persistence.hpp"

namespace stickyd {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int b64_index(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

Persistence::Persistence(const Config& cfg) : cfg_(cfg) { rebuild(); }

void Persistence::rebuild() {
  by_value_.clear();
  for (size_t i = 0; i < cfg_.backends.size(); ++i) {
    const BackendConfig& b = cfg_.backends[i];
    if (b.removed) continue;
    by_value_.emplace(b.cookie.empty() ? b.name : b.cookie, static_cast<int>(i));
    for (const std::string& a : b.cookie_aliases) by_value_.emplace(a, static_cast<int>(i));
  }
}

int Persistence::backend_for_value(std::string_view value) const {
  auto it = by_value_.find(std::string(value));
  return it == by_value_.end() ? -1 : it->second;
}

std::optional<Persistence::Tag> Persistence::parse_tag(std::string_view sid) const {
  if (!any_tags()) return std::nullopt;
  const std::string& sep = cfg_.sticky.tag.separator;
  size_t at = sid.find(sep);
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  int b = backend_for_value(sid.substr(0, at));
  if (b < 0) return std::nullopt;
  std::string_view rest = sid.substr(at + sep.size());
  if (proxy_tags() && rest.empty()) return std::nullopt;
  return Tag{b, proxy_tags() ? rest : sid};
}

std::string Persistence::value_of(int backend) const {
  const BackendConfig& b = cfg_.backends[static_cast<size_t>(backend)];
  return b.cookie.empty() ? b.name : b.cookie;
}

std::string Persistence::tag(int backend, std::string_view sid) const {
  std::string out = value_of(backend);
  out += cfg_.sticky.tag.separator;
  out += sid;
  return out;
}

std::string Persistence::encode_date(int64_t unix_s) {
  // HAProxy: s30tob64((date + 3) >> 2), most significant digit first.
  auto v = static_cast<uint32_t>(((unix_s + 3) >> 2) & 0x3FFFFFFF);
  std::string out(5, 'A');
  for (int i = 4; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kB64[v & 63];
    v >>= 6;
  }
  return out;
}

std::optional<int64_t> Persistence::decode_date(std::string_view five) {
  if (five.size() != 5) return std::nullopt;
  int64_t v = 0;
  for (char c : five) {
    int d = b64_index(c);
    if (d < 0) return std::nullopt;
    v = (v << 6) | d;
  }
  return v << 2;
}

Persistence::ServerCookie Persistence::parse_server_cookie(std::string_view raw,
                                                           int64_t now_s) const {
  ServerCookie c;
  size_t bar = raw.find('|');
  c.value = raw.substr(0, bar);
  c.backend = backend_for_value(c.value);
  if (bar != std::string_view::npos) {
    std::string_view dates = raw.substr(bar + 1);
    size_t bar2 = dates.find('|');
    if (auto last = decode_date(dates.substr(0, bar2))) c.last_seen = *last;
    if (bar2 != std::string_view::npos)
      if (auto first = decode_date(dates.substr(bar2 + 1))) c.first_seen = *first;
  }
  const ServerCookieConfig& sc = cfg_.sticky.server_cookie;
  if (sc.maxidle && c.last_seen &&
      (now_s - c.last_seen > sc.maxidle->count() / 1000 || c.last_seen > now_s + 86400))
    c.expired = true;
  if (sc.maxlife && c.first_seen && now_s - c.first_seen > sc.maxlife->count() / 1000)
    c.expired = true;
  return c;
}

std::string Persistence::server_cookie_value(int backend, int64_t now_s,
                                             int64_t first_seen_s) const {
  std::string out = value_of(backend);
  const ServerCookieConfig& sc = cfg_.sticky.server_cookie;
  if (sc.maxidle || sc.maxlife) {
    out += '|';
    out += encode_date(now_s);
  }
  if (sc.maxlife) {
    out += '|';
    out += encode_date(first_seen_s ? first_seen_s : now_s);
  }
  return out;
}

std::string Persistence::insert_set_cookie(int backend, int64_t now_s,
                                           int64_t first_seen_s) const {
  const ServerCookieConfig& sc = cfg_.sticky.server_cookie;
  std::string out = sc.name + "=" + server_cookie_value(backend, now_s, first_seen_s) + "; path=/";
  for (const std::string& d : sc.domains) out += "; domain=" + d;
  if (sc.httponly) out += "; HttpOnly";
  if (sc.secure) out += "; Secure";
  return out;
}

bool Persistence::needs_refresh(const ServerCookie& c, int64_t now_s) const {
  const ServerCookieConfig& sc = cfg_.sticky.server_cookie;
  if (!sc.maxidle && !sc.maxlife) return false;
  if (!c.last_seen) return true;  // dates are configured but the cookie has none
  if (!sc.maxidle) return false;
  // Refresh well before the idle limit, but not on every request.
  int64_t step = std::max<int64_t>(sc.maxidle->count() / 1000 / 8, 4);
  return now_s - c.last_seen >= step;
}

}  // namespace stickyd
