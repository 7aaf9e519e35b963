// One line per event on stderr: "<ISO-8601 UTC> <level> <event> key=value ...".
// Values are escaped (control bytes, quotes, backslashes, non-ASCII as \xNN) so nothing a
// client sends can forge or split a log line.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "stickyd/config.hpp"

namespace stickyd::log {

struct Field {
  std::string_view key;
  std::string value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  template <typename N, typename = std::enable_if_t<std::is_arithmetic_v<N>>>
  Field(std::string_view k, N n) : key(k), value(std::to_string(n)) {}
};

void set_level(LogLevel level);
// Warn lines of one event (per-connection problems: client timeouts, bad requests, refused
// connections, backend failures) are written at most `per_second` times a second (0: no
// limit); the rest are counted and reported by one `log lines suppressed` line per event.
void set_rate_limit(uint32_t per_second);
// Writes the pending `log lines suppressed` lines (a timer calls it every second, so a flood
// that stops is still reported).
void flush_suppressed();
bool enabled(LogLevel level);
void write(LogLevel level, std::string_view event, std::initializer_list<Field> fields);

// The same fields as one JSON object per line: {"ts":"...","event":"request",...}.
void json_line(std::initializer_list<Field> fields);

// Escaped form of untrusted bytes, truncated to `max` input bytes (with a trailing "...").
std::string escape(std::string_view raw, size_t max = 256);

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) {
  if (enabled(LogLevel::Debug)) write(LogLevel::Debug, e, f);
}
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { write(LogLevel::Info, e, f); }
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) { write(LogLevel::Warn, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { write(LogLevel::Error, e, f); }

}  // namespace stickyd::log
