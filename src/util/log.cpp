#include "stickyd/log.hpp"


#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace stickyd::log {
namespace {
std::atomic<LogLevel> g_level{LogLevel::Info};  // set by any worker on reload

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "?";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v)
    if (c <= ' ' || c == '"' || c == '=' || c >= 0x7f) return true;
  return false;
}
}  // namespace

void set_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

namespace {
// Per warn event: lines written in the current second and lines held back since the last
// report. Warn lines are rare except in a flood, so one mutex is enough.
struct Budget {
  int64_t second = 0;
  uint32_t written = 0;
  uint64_t suppressed = 0;
};
std::atomic<uint32_t> g_rate{10};
std::mutex g_budget_mu;
std::unordered_map<std::string, Budget> g_budgets;
constexpr size_t kMaxEvents = 1024;  // event names are ours; bounded all the same

int64_t now_second() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

void report_suppressed(const std::string& event, uint64_t n) {
  write(LogLevel::Warn, "log lines suppressed", {{"event", event}, {"suppressed", n}});
}
}  // namespace

void set_rate_limit(uint32_t per_second) { g_rate.store(per_second, std::memory_order_relaxed); }

// true: write this warn line now. Reports what the event's previous second held back first.
static bool admit_warn(std::string_view event) {
  uint32_t rate = g_rate.load(std::memory_order_relaxed);
  if (rate == 0 || event == "log lines suppressed") return true;
  uint64_t report = 0;
  std::string name(event);
  {
    std::lock_guard lock(g_budget_mu);
    auto it = g_budgets.find(name);
    if (it == g_budgets.end()) {
      if (g_budgets.size() >= kMaxEvents) return true;
      it = g_budgets.emplace(name, Budget{}).first;
    }
    Budget& b = it->second;
    int64_t sec = now_second();
    if (b.second != sec) {
      b.second = sec;
      b.written = 0;
      report = b.suppressed;
      b.suppressed = 0;
    }
    if (b.written >= rate) {
      ++b.suppressed;
      return false;
    }
    ++b.written;
  }
  if (report) report_suppressed(name, report);
  return true;
}

void flush_suppressed() {
  std::vector<std::pair<std::string, uint64_t>> out;
  {
    std::lock_guard lock(g_budget_mu);
    int64_t sec = now_second();
    for (auto& [name, b] : g_budgets)
      if (b.suppressed && b.second != sec) {
        out.emplace_back(name, b.suppressed);
        b.suppressed = 0;
      }
  }
  for (auto& [name, n] : out) report_suppressed(name, n);
}
bool enabled(LogLevel level) { return static_cast<int>(level) >= static_cast<int>(g_level.load(std::memory_order_relaxed)); }

std::string escape(std::string_view raw, size_t max) {
  std::string out;
  size_t n = raw.size() < max ? raw.size() : max;
  out.reserve(n + 8);
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (raw.size() > n) out += "...";
  return out;
}

namespace {
std::string timestamp() {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char ts[40];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1,
           t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(tv.tv_usec / 1000));
  return ts;
}

void put_line(const std::string& line) {
  // One write(2) per line so lines from concurrent writers never interleave.
  size_t off = 0;
  while (off < line.size()) {
    ssize_t w = ::write(2, line.data() + off, line.size() - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
}

void json_string(std::string& out, std::string_view v) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}
}  // namespace

void json_line(std::initializer_list<Field> fields) {
  std::string line = "{\"ts\":\"" + timestamp() + "\",\"event\":\"request\"";
  for (const Field& f : fields) {
    line += ',';
    json_string(line, f.key);
    line += ':';
    // Only the fields that are numbers by definition; anything a client chose (a sid of
    // "0123") or a placeholder ("-") stays a string.
    bool numeric = (f.key == "status" || f.key == "bytes" || f.key == "ms") && !f.value.empty() &&
                   f.value.size() < 20 &&
                   f.value.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) line += f.value;
    else json_string(line, f.value.substr(0, 1024));
  }
  line += "}\n";
  put_line(line);
}

void write(LogLevel level, std::string_view event, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  if (level == LogLevel::Warn && !admit_warn(event)) return;
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char ts[40];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1,
           t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(tv.tv_usec / 1000));
  std::string line;
  line.reserve(128);
  line += ts;
  line += ' ';
  line += level_name(level);
  line += ' ';
  line += escape(event, 128);
  for (const Field& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    // A forwarded request head (debug) is logged whole: the smuggling tests compare it.
    std::string v = escape(f.value, f.key == "head" ? 65536 : 512);
    if (needs_quotes(f.value)) {
      line += '"';
      line += v;
      line += '"';
    } else {
      line += v;
    }
  }
  line += '\n';
  // One write(2) per line so lines from concurrent writers never interleave.
  ssize_t off = 0;
  while (off < static_cast<ssize_t>(line.size())) {
    ssize_t w = ::write(2, line.data() + off, line.size() - off);
    if (w <= 0) break;
    off += w;
  }
}

}  // namespace stickyd::log
