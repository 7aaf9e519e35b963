#include "stickyd/http_head.hpp"

namespace stickyd {

namespace {
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

bool iequals_bytes(const char* a, const char* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i] && lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void HttpHead::clear() {
  buf_.clear();
  fields_.clear();
  start_len_ = 0;
  in_start_ = true;
  in_value_ = false;
  has_connection_ = -1;
}

// Buffers of released heads, per thread (one event loop each), for the next head to take:
// an idle connection holds no head buffer, yet a busy keep-alive connection does not pay a
// malloc and a free per request. Bounded in count and in the size of what is kept.
struct HttpHead::Pool {
  static constexpr size_t kMaxEntries = 256;
  static constexpr size_t kMaxBytes = 4096;
  static constexpr size_t kMaxFields = 64;
  struct Entry {
    std::string buf;
    std::vector<Field> fields;
  };
  std::vector<Entry> entries;
};

HttpHead::Pool& HttpHead::pool() {
  thread_local Pool p;
  return p;
}

void HttpHead::release() {
  clear();
  Pool& p = pool();
  if (buf_.capacity() >= kInitialBytes && buf_.capacity() <= Pool::kMaxBytes &&
      fields_.capacity() >= kInitialFields && fields_.capacity() <= Pool::kMaxFields &&
      p.entries.size() < Pool::kMaxEntries) {
    p.entries.push_back({std::move(buf_), std::move(fields_)});
  }
  std::string().swap(buf_);
  std::vector<Field>().swap(fields_);
}

void HttpHead::reserve_first() {
  // A typical head in one allocation each instead of a string and a vector doubled up from
  // nothing; from the pool when a released head left its buffers there.
  Pool& p = pool();
  if (!p.entries.empty() && buf_.empty() && fields_.empty()) {
    buf_ = std::move(p.entries.back().buf);
    fields_ = std::move(p.entries.back().fields);
    p.entries.pop_back();
    return;  // both are empty (cleared before they were pooled)
  }
  buf_.reserve(kInitialBytes);
  fields_.reserve(kInitialFields);
}

size_t HttpHead::add_start(const char* p, size_t n) {
  if (buf_.capacity() < kInitialBytes) reserve_first();
  buf_.append(p, n);
  start_len_ += static_cast<uint32_t>(n);
  return buf_.size();
}

size_t HttpHead::add_name(const char* p, size_t n) {
  in_start_ = false;
  has_connection_ = -1;
  if (fields_.capacity() < kInitialFields) reserve_first();
  if (fields_.empty() || in_value_) {
    uint32_t off = static_cast<uint32_t>(buf_.size());
    fields_.push_back(Field{off, 0, off, 0});
    in_value_ = false;
  }
  buf_.append(p, n);
  fields_.back().name_len += static_cast<uint32_t>(n);
  fields_.back().value_off = static_cast<uint32_t>(buf_.size());
  return buf_.size();
}

size_t HttpHead::add_value(const char* p, size_t n) {
  if (fields_.empty()) return buf_.size();
  in_value_ = true;
  buf_.append(p, n);
  fields_.back().value_len += static_cast<uint32_t>(n);
  return buf_.size();
}

std::string_view HttpHead::get(std::string_view n) const {
  for (size_t i = 0; i < fields_.size(); ++i)
    if (iequals(name(i), n)) return value(i);
  return {};
}

bool HttpHead::has(std::string_view n) const {
  for (size_t i = 0; i < fields_.size(); ++i)
    if (iequals(name(i), n)) return true;
  return false;
}

std::string HttpHead::join(std::string_view n, std::string_view sep) const {
  std::string out;
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (!iequals(name(i), n)) continue;
    if (!out.empty()) out += sep;
    out += value(i);
  }
  return out;
}

bool HttpHead::is_hop_by_hop(size_t i) const {
  std::string_view n = name(i);
  switch (n.size()) {  // connection, keep-alive, proxy-connection, te, upgrade
    case 2: if (iequals(n, "te")) return true; break;
    case 7: if (iequals(n, "upgrade")) return true; break;
    case 10: if (iequals(n, "connection") || iequals(n, "keep-alive")) return true; break;
    case 16: if (iequals(n, "proxy-connection")) return true; break;
    default: break;
  }
  if (has_connection_ < 0) {
    has_connection_ = 0;
    for (size_t j = 0; j < fields_.size(); ++j)
      if (iequals(name(j), "connection")) has_connection_ = 1;
  }
  if (!has_connection_) return false;
  // Fields the sender listed in Connection are hop-by-hop too (except the framing ones,
  // which a hostile Connection header must not be able to strip).
  if (iequals(n, "transfer-encoding") || iequals(n, "content-length") || iequals(n, "host"))
    return false;
  for (size_t j = 0; j < fields_.size(); ++j)
    if (iequals(name(j), "connection") && has_token(value(j), n)) return true;
  return false;
}

}  // namespace stickyd
