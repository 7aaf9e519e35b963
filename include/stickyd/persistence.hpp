// Persistence values: which backend a tagged sid or an HAProxy-style server cookie names.
//
// Every backend has a value (BackendConfig::cookie, plus aliases). Sid tags are
// "<value><separator><sid>"; server cookies are HAProxy's, including its `|<last>|<first>`
// date suffix for maxidle/maxlife (dates in seconds/4, five base64 digits, as HAProxy writes
// them), so cookies issued by an existing HAProxy keep working.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "stickyd/config.hpp"

namespace stickyd {

class Persistence {
 public:
  explicit Persistence(const Config& cfg);
  void rebuild();  // after the config changed in place (reload)

  // Backend index for a value (or alias); -1 when none.
  int backend_for_value(std::string_view value) const;
  // The backend's main value (what stickyd issues).
  std::string value_of(int backend) const;

  // ---- sid tags
  bool proxy_tags() const { return cfg_.sticky.tag.enabled; }
  bool any_tags() const { return cfg_.sticky.tag.enabled || cfg_.sticky.tag.accept_backend_tags; }
  struct Tag {
    int backend;
    std::string_view untagged;  // what the backend knows: the part after the tag (proxy tags)
  };
  std::optional<Tag> parse_tag(std::string_view sid) const;
  std::string tag(int backend, std::string_view sid) const;

  // ---- HAProxy server cookie
  struct ServerCookie {
    int backend = -1;
    std::string_view value;  // the value part, without dates
    int64_t last_seen = 0;   // unix seconds; 0 when no dates
    int64_t first_seen = 0;
    bool expired = false;    // maxidle/maxlife exceeded: ignore it
  };
  // Parses a server cookie value as sent by a client (insert/rewrite modes).
  ServerCookie parse_server_cookie(std::string_view raw, int64_t now_s) const;
  // Value to insert/rewrite for `backend` ("s1", or "s1|<last>|<first>" with maxidle/maxlife).
  std::string server_cookie_value(int backend, int64_t now_s, int64_t first_seen_s) const;
  // Full Set-Cookie value for insert mode: "SERVERID=s1; path=/; domain=d; HttpOnly; Secure".
  std::string insert_set_cookie(int backend, int64_t now_s, int64_t first_seen_s) const;
  // Whether a still-valid client cookie should be refreshed (its last-seen date is getting old).
  bool needs_refresh(const ServerCookie& c, int64_t now_s) const;

  static std::string encode_date(int64_t unix_s);        // 5 chars
  static std::optional<int64_t> decode_date(std::string_view five);

 private:
  const Config& cfg_;
  std::unordered_map<std::string, int> by_value_;
};

}  // namespace stickyd
