// Request-target splitting and query-string lookups (Node querystring semantics).

#include "stickyd/query.hpp"

namespace stickyd {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool component_equals(std::string_view raw, std::string_view key) {
  if (!query_needs_decoding(raw)) return raw == key;
  // A decoded component is never longer than its raw form.
  if (key.size() > raw.size()) return false;
  return percent_decode(raw, true) == key;
}

}  // namespace

// True when decoding `raw` could change it (so a plain comparison is not enough).
bool query_needs_decoding(std::string_view raw) {
  return raw.find_first_of("%+") != std::string_view::npos;
}

RequestTarget split_target(std::string_view target) {
  const size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return RequestTarget{target, std::string_view()};
  return RequestTarget{target.substr(0, q), target.substr(q + 1)};
}

std::string percent_decode(std::string_view in, bool plus_is_space) {
  // querystring.unescapeBuffer: a '%' not followed by two hex digits is kept literally.
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+' && plus_is_space) {
      out.push_back(' ');
      continue;
    }
    if (c == '%' && in.size() - i >= 3) {
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(c);
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  std::optional<std::string_view> raw = query_param_raw(query, key);
  if (!raw) return std::nullopt;
  return percent_decode(*raw, true);
}

std::optional<std::string_view> query_param_raw(std::string_view query, std::string_view key) {
  // engine.io 6 builds its query with Object.fromEntries(url.searchParams): the LAST
  // occurrence of a repeated key is the one the backend uses, so it is the one we route by.
  std::optional<std::string_view> last;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view part = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    const std::string_view raw_key = part.substr(0, eq);
    if (!component_equals(raw_key, key)) continue;
    last = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
  }
  return last;
}

bool is_engineio_path(std::string_view path, std::string_view prefix) {
  return path.size() >= prefix.size() && path.substr(0, prefix.size()) == prefix;
}

}  // namespace stickyd
