// The config loader's internals, shared by src/config/*.cpp (not public: the contract is
// include/stickyd/config.hpp). One Loader class walks the YAML document; its members are
// defined by concern:
//   values.cpp       errors, positions, typed getters; value checks, dates
//   listen.cpp       listen entries and TLS (listener and backend `tls:`)
//   backends.cpp     backends, balance, health, backend cookie values
//   persistence.cpp  path, cookie, affinity, sticky (server_cookie, sid tags), headers
//   loader.cpp       the top-level keys, the checks across sections, the small sections
#pragma once

#include "stickyd/config.hpp"

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stickyd::config_detail {

// Scalars, dates and value checks (values.cpp).
bool is_digit(char c);
bool is_alpha(char c);
std::string lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
bool parse_u64_digits(std::string_view s, uint64_t& out);
std::optional<int64_t> parse_imf_fixdate(std::string_view s);
std::optional<int64_t> parse_iso8601(std::string_view s);
bool is_token(std::string_view s);
bool is_cookie_domain(std::string_view s);
bool is_cookie_path_chars(std::string_view s);
bool is_backend_name(std::string_view s);
bool is_cookie_octets(std::string_view s);
bool is_sid_tag_chars(std::string_view s);
bool is_visible_ascii(std::string_view s);
bool is_header_value(std::string_view s);
bool is_managed_header(std::string_view name);
std::string ms_text(Millis d);
bool is_dns_name(std::string_view s);
bool is_ip_address(const std::string& host_port);  // "ip:port" / "[ip]:port", no name
bool is_lookup_name(std::string_view s);           // a DNS name; labels may start with '_'

// ---------------------------------------------------------------------------------------------
// YAML walking.

class Loader {
 public:
  explicit Loader(std::string file)
      : file_(std::move(file)), base_dir_(std::filesystem::path(file_).parent_path()) {}

  std::vector<ConfigError> errors;

  // ---- values.cpp: errors, positions, typed getters ------------------------------------------

  void error(int line, int column, std::string message);
  void error(const YAML::Mark& m, std::string message);

  // Where to report a problem with `value` (the value of `key`): a null value (`key:` with
  // nothing after it) has no useful position of its own, so point at its key.
  static YAML::Mark where(const YAML::Node& value, const YAML::Node& key);

  struct Field {
    const char* name;
    std::function<void(const YAML::Node& key, const YAML::Node& value)> handle;
  };

  // Visits the entries of `map` in document order: unknown keys, non-scalar keys and
  // duplicates are errors; known keys go to their handler. Returns false when `map` is not a
  // map (after reporting it).
  bool walk_map(const YAML::Node& map, const YAML::Mark& where_if_bad,
                const std::vector<Field>& fields);

  static bool is_plain(const YAML::Node& n);

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

  std::optional<std::string> get_string(const YAML::Node& value, const YAML::Node& key);
  static std::optional<bool> as_bool(const YAML::Node& value);
  std::optional<bool> get_bool(const YAML::Node& value, const YAML::Node& key);
  static std::optional<int64_t> as_int(const YAML::Node& value);
  std::optional<int64_t> get_int(const YAML::Node& value, const YAML::Node& key, int64_t min,
                                 int64_t max);
  std::optional<Millis> get_duration(const YAML::Node& value, const YAML::Node& key,
                                     bool allow_zero = false);
  std::optional<uint64_t> get_size(const YAML::Node& value, const YAML::Node& key, uint64_t min,
                                   uint64_t max);
  std::optional<SocketAddress> get_address(const YAML::Node& value, const YAML::Node& key,
                                           bool allow_port_zero);

  // ---- loader.cpp: the document, small sections, checks across sections ----------------------

  void load(const YAML::Node& root, Config& cfg);
  void load_upgrade_protocols(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_timeouts(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_limits(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_log(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_access_log(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_admin(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void check_same_site_none();
  void check_server_cookie_name(const Config& cfg);

  // ---- listen.cpp: listen entries, TLS -------------------------------------------------------

  void load_listen(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_listen_entry(const YAML::Node& item, const YAML::Node& key, Config& cfg);
  std::string resolve_path(const std::string& p) const;

  struct PathAt {
    std::string path;
    YAML::Mark at;      // the value
    YAML::Mark key_at;  // its key
  };

  std::optional<PathAt> get_path(const YAML::Node& value, const YAML::Node& key);
  bool check_pair(const PathAt& cert, const PathAt& key);
  std::optional<TlsServerConfig> load_tls_server(const YAML::Node& key, const YAML::Node& value,
                                                 bool& secure_cookies);
  std::optional<TlsClientConfig> load_tls_client(const YAML::Node& key, const YAML::Node& value);

  // ---- backends.cpp: backends (static and discovered), resolvers, balance, health -----------------------------------------------

  void load_backends(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_backend_entry(const YAML::Node& item, std::map<std::string, int>& names,
                          Config& cfg);
  void load_discover_entry(const YAML::Node& item, Config& cfg);
  void load_resolvers(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_balance(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  static std::optional<std::string> cookie_value_problem(const std::string& value,
                                                         const Config& cfg);
  void resolve_backend_cookies(Config& cfg);
  void load_health(const YAML::Node& key, const YAML::Node& value, Config& cfg);

  // ---- persistence.cpp: path, cookie, affinity, sticky, headers ------------------------------

  void load_path(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_cookie(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_affinity(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  void load_separator(const YAML::Node& key, const YAML::Node& value, std::string& out);
  void load_sticky(const YAML::Node& key, const YAML::Node& value, Config& cfg);
  SidTagConfig load_tag_sids(const YAML::Node& key, const YAML::Node& value);
  SidTagConfig load_backend_tags(const YAML::Node& key, const YAML::Node& value);
  void load_server_cookie(const YAML::Node& key, const YAML::Node& value, ServerCookieConfig& sc);
  void load_header_map(const YAML::Node& key, const YAML::Node& value,
                       std::vector<HeaderSetting>& out);
  void load_headers(const YAML::Node& key, const YAML::Node& value, Config& cfg);

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

}  // namespace stickyd::config_detail
