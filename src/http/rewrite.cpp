#include "stickyd/rewrite.hpp"

#include "stickyd/cookie.hpp"
#include "stickyd/engineio.hpp"
#include "stickyd/query.hpp"

namespace stickyd {

namespace {
// Every `key` parameter of the target's query set to `value` (percent-encoded), or removed
// when `value` is null; the rest of the target, fragment included, unchanged.
std::string edit_query_param(std::string_view target, std::string_view key, const std::string_view* value) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  // Only the query proper: a fragment (which a client may send) is not part of it for the
  // router nor for engine.io's URL parsing, and is copied through unchanged.
  size_t hash = target.find('#', q + 1);
  std::string_view fragment = hash == std::string_view::npos ? std::string_view() : target.substr(hash);
  std::string_view query = target.substr(q + 1, hash == std::string_view::npos ? std::string_view::npos : hash - q - 1);
  std::string encoded = value ? encode_uri_component(*value) : std::string();
  size_t pos = 0;
  bool first = true;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view part = query.substr(pos, amp - pos);
    size_t eq = part.find('=');
    std::string_view raw_key = part.substr(0, eq);
    bool match = !part.empty() && percent_decode(raw_key, true) == key;
    if (!(match && !value)) {
      if (!first) out += '&';
      first = false;
      if (match) {
        out.append(raw_key);
        out += '=';
        out += encoded;
      } else {
        out.append(part);
      }
    }
    if (amp == query.size()) break;
    pos = amp + 1;
  }
  if (first && !value) out.pop_back();  // nothing left: no '?'
  out.append(fragment);
  return out;
}
}  // namespace

std::string replace_query_param(std::string_view target, std::string_view key, std::string_view value) {
  return edit_query_param(target, key, &value);
}

std::string remove_query_param(std::string_view target, std::string_view key) {
  return edit_query_param(target, key, nullptr);
}

std::string edit_cookie_header(std::string_view header, std::string_view name,
                               const std::function<std::optional<std::string>(std::string_view)>& edit) {
  std::string out;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t semi = header.find(';', pos);
    if (semi == std::string_view::npos) semi = header.size();
    std::string_view pair = header.substr(pos, semi - pos);
    pos = semi + 1;
    while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
    while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t')) pair.remove_suffix(1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string_view n = pair.substr(0, eq);
    while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
    std::string replaced;
    if (eq != std::string_view::npos && n == name) {
      std::string_view v = pair.substr(eq + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      std::optional<std::string> nv = edit(v);
      if (!nv) continue;
      replaced = std::string(n) + "=" + *nv;
      pair = replaced;
    }
    if (!out.empty()) out += "; ";
    out.append(pair);
  }
  return out;
}

std::string replace_set_cookie_value(std::string_view set_cookie, std::string_view value) {
  size_t eq = set_cookie.find('=');
  if (eq == std::string_view::npos) return std::string(set_cookie);
  size_t semi = set_cookie.find(';', eq);
  std::string out(set_cookie.substr(0, eq + 1));
  out.append(value);
  if (semi != std::string_view::npos) out.append(set_cookie.substr(semi));
  return out;
}

namespace {
// Replaces `"sid":"from"` in the JSON text `packet` (the first occurrence at top level is all
// an open packet has). Returns false when not found.
bool swap_sid(std::string& packet, std::string_view from, std::string_view to) {
  // JSON.parse keeps the last of repeated keys, so the last match is the one that counts;
  // the caller re-parses the result to be sure (odd JSON could still fool a text match).
  std::string needle = "\"sid\":\"" + std::string(from) + "\"";
  size_t at = packet.rfind(needle);
  if (at == std::string::npos) return false;
  packet.replace(at + 7, from.size(), to);
  return true;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

namespace {
std::optional<std::string> swap_open_packet_sid(std::string_view body, std::string_view from,
                                                std::string_view to) {
  if (body.empty() || from.empty()) return std::nullopt;
  if (body[0] == '\0') {
    // EIO3 binary: 0x00, length digits as byte values, 0xFF, packet.
    size_t i = 1;
    while (i < body.size() && i < 9 && static_cast<unsigned char>(body[i]) <= 9) ++i;
    if (i == 1 || i >= body.size() || static_cast<unsigned char>(body[i]) != 0xFF)
      return std::nullopt;
    size_t len = 0;
    for (size_t k = 1; k < i; ++k) len = len * 10 + static_cast<unsigned char>(body[k]);
    if (body.size() - i - 1 < len) return std::nullopt;
    std::string packet(body.substr(i + 1, len));
    if (!swap_sid(packet, from, to)) return std::nullopt;
    std::string out(1, '\0');
    for (char d : std::to_string(packet.size())) out += static_cast<char>(d - '0');
    out += static_cast<char>(0xFF);
    out += packet;
    out.append(body.substr(i + 1 + len));
    return out;
  }
  if (body[0] == '0' && (body.size() < 2 || !is_digit(body[1]))) {
    // EIO4: the open packet runs to the first record separator.
    size_t end = body.find('\x1e');
    std::string packet(body.substr(0, end));
    if (!swap_sid(packet, from, to)) return std::nullopt;
    if (end != std::string_view::npos) packet.append(body.substr(end));
    return packet;
  }
  // EIO3 text: <len>:<packet>. The sid is ASCII, so UTF-16 units and bytes change alike.
  size_t colon = body.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 7) return std::nullopt;
  size_t len = 0;
  for (size_t k = 0; k < colon; ++k) {
    if (!is_digit(body[k])) return std::nullopt;
    len = len * 10 + static_cast<size_t>(body[k] - '0');
  }
  std::string_view rest = body.substr(colon + 1);
  // Count `len` UTF-16 units in bytes (non-ASCII may follow in later packets only).
  size_t bytes = 0, units = 0;
  while (units < len && bytes < rest.size()) {
    auto c = static_cast<unsigned char>(rest[bytes]);
    size_t w = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    units += w == 4 ? 2 : 1;
    bytes += w;
  }
  if (units != len || bytes > rest.size()) return std::nullopt;
  std::string packet(rest.substr(0, bytes));
  if (!swap_sid(packet, from, to)) return std::nullopt;
  size_t new_units = len - from.size() + to.size();
  std::string out = std::to_string(new_units) + ":" + packet;
  out.append(rest.substr(bytes));
  return out;
}

}  // namespace

std::optional<std::string> replace_open_packet_sid(std::string_view body, std::string_view from,
                                                   std::string_view to) {
  std::optional<std::string> out = swap_open_packet_sid(body, from, to);
  if (!out) return std::nullopt;
  // What the client will read must be exactly the tagged sid; otherwise leave the body alone.
  std::optional<OpenPacket> check = parse_open_packet(*out);
  if (!check || check->sid != to) return std::nullopt;
  return out;
}

std::string server_text_frame(std::string_view payload) {
  std::string out;
  out += static_cast<char>(0x81);
  size_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(n);
  } else if (n <= 0xFFFF) {
    out += static_cast<char>(126);
    out += static_cast<char>((n >> 8) & 0xFF);
    out += static_cast<char>(n & 0xFF);
  } else {
    out += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) out += static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xFF);
  }
  out.append(payload);
  return out;
}

}  // namespace stickyd
