// `stickyd import-haproxy FILE`: turns an HAProxy cookie-persistence setup into a stickyd
// configuration, so a cluster moves over without translating haproxy.cfg by hand.
//
// Two layers. HaproxyConfig reads HAProxy's syntax as HAProxy's configuration manual defines
// it (section 2: sections, words, `\` escapes, weak "..." quotes with environment variables,
// strong '...' quotes, comments, line continuations), without knowing any keyword.
// import_haproxy() then maps the keywords that have a stickyd meaning (binds, balance,
// cookie persistence, servers, checks, timeouts, resolvers, headers, ...) and keeps every other
// line as a comment naming its line and why it was not mapped. The YAML it prints passes
// `stickyd --check` (addresses that are names must resolve where stickyd runs, as for HAProxy).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stickyd::haproxy {

struct Line {
  int number = 0;                  // of its first physical line
  std::vector<std::string> words;  // unquoted, unescaped, variables expanded
  std::string text;                // as written (continuations joined), for comments
};

struct Section {
  std::string kind;  // global, defaults, frontend, backend, listen, resolvers, ... (lower case)
  std::string name;  // may be empty (global, unnamed defaults)
  std::string from;  // `from NAME`: the named defaults it inherits
  int line = 0;
  std::vector<std::string> args;  // words after the name (e.g. a listen's address)
  std::vector<Line> lines;
};

// Environment lookup: the value of a variable, or nullopt when unset.
using EnvFn = std::function<std::optional<std::string>(std::string_view name)>;

struct ParseResult {
  std::vector<Section> sections;
  int error_line = 0;  // 0: no error
  std::string error;
  std::vector<std::string> notes;  // e.g. variables that were not set (expanded to "")
};

// Reads HAProxy's configuration syntax; no keyword knowledge.
ParseResult parse_haproxy(std::string_view text, const EnvFn& env);

struct ImportOptions {
  std::string file = "haproxy.cfg";  // named in comments and errors
  std::string backend;               // --backend NAME: the Socket.IO backend to import
};

struct ImportResult {
  bool ok = false;
  std::string yaml;   // when ok
  std::string error;  // when not: "FILE:LINE: message" (LINE omitted when none applies)
  size_t mapped = 0;    // configuration lines that became stickyd settings
  size_t unmapped = 0;  // lines kept as comments
  std::vector<std::string> warnings;  // e.g. an unset environment variable (also in the YAML)
};

ImportResult import_haproxy(std::string_view text, const ImportOptions& opts, const EnvFn& env);

// HAProxy's time format: a number with an optional unit (us, ms, s, m, h, d), milliseconds by
// default. nullopt when it is not one.
std::optional<long long> haproxy_time_ms(std::string_view text);

}  // namespace stickyd::haproxy
