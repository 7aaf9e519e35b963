// HttpHead: the start line and header fields of one HTTP/1.x message, accumulated from
// llhttp's span callbacks (a name or value may arrive in several pieces across reads) into
// one contiguous buffer, and the rules a proxy applies when it forwards them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stickyd {

// ASCII case-insensitive equality. Inline: most calls compare a header name against a
// literal of another length and end at the size check.
bool iequals_bytes(const char* a, const char* b, size_t n);
inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && iequals_bytes(a.data(), b.data(), a.size());
}
// True when the comma-separated header value lists `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token);

class HttpHead {
 public:
  struct Field {
    uint32_t name_off, name_len, value_off, value_len;
  };

  void clear();
  void release();  // clear and give the memory back (connection going idle)

  // Span callbacks. Each returns the head's total size so the caller can enforce limits.
  size_t add_start(const char* p, size_t n);  // URL of a request, reason of a response
  size_t add_name(const char* p, size_t n);
  size_t add_value(const char* p, size_t n);
  size_t size() const { return buf_.size(); }

  std::string_view start() const { return {buf_.data(), start_len_}; }
  size_t count() const { return fields_.size(); }
  std::string_view name(size_t i) const { return view(fields_[i].name_off, fields_[i].name_len); }
  std::string_view value(size_t i) const {
    return view(fields_[i].value_off, fields_[i].value_len);
  }
  // First value of `name`, case-insensitive; empty view when absent.
  std::string_view get(std::string_view name) const;
  bool has(std::string_view name) const;
  // Every value of `name` joined with `sep` (e.g. several Cookie or X-Forwarded-For lines).
  std::string join(std::string_view name, std::string_view sep) const;

  // Hop-by-hop per RFC 9110 7.6.1: Connection, the fields it names, Keep-Alive,
  // Proxy-Connection, TE, Upgrade. Transfer-Encoding is not in this list: stickyd forwards
  // bodies with their original framing, which llhttp has validated.
  bool is_hop_by_hop(size_t i) const;

 private:
  static constexpr size_t kInitialBytes = 512;
  static constexpr size_t kInitialFields = 16;
  void reserve_first();
  struct Pool;
  static Pool& pool();
  std::string_view view(uint32_t off, uint32_t len) const { return {buf_.data() + off, len}; }
  std::string buf_;
  std::vector<Field> fields_;
  uint32_t start_len_ = 0;
  bool in_start_ = true;
  bool in_value_ = false;
  // Whether some field is called Connection (-1: not looked yet); is_hop_by_hop() only
  // scans for the fields it lists when there is one.
  mutable int8_t has_connection_ = -1;
};

}  // namespace stickyd
