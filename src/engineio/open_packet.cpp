// Engine.IO open packet parsing (polling handshake bodies, EIO3 and EIO4 framings, and the
// first websocket frame), with a small strict JSON reader: no library, bounded nesting.

#include <cstdint>
#include <limits>

#include "stickyd/cookie.hpp"
#include "stickyd/engineio.hpp"

namespace stickyd {

namespace {

constexpr int kMaxDepth = 32;                          // nesting of skipped values
constexpr int64_t kMaxSafeInteger = 9007199254740991;  // Number.MAX_SAFE_INTEGER

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  bool at_end() {
    skip_ws();
    return pos_ == s_.size();
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool consume(char c) {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  char peek() {
    skip_ws();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }

  // A JSON string, decoded to UTF-8 (lone surrogates as their 3-byte WTF-8 form, as a JS
  // string would hold them).
  bool read_string(std::string& out) {
    out.clear();
    if (!consume('"')) return false;
    while (pos_ < s_.size()) {
      // A run of plain bytes in one append.
      size_t run = pos_;
      while (run < s_.size() && s_[run] != '"' && s_[run] != '\\' &&
             static_cast<unsigned char>(s_[run]) >= 0x20)
        ++run;
      if (run > pos_) {
        out.append(s_.data() + pos_, run - pos_);
        pos_ = run;
        if (pos_ >= s_.size()) break;
      }
      const unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // raw control characters are not allowed in JSON strings
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        continue;
      }
      if (pos_ >= s_.size()) return false;
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!read_hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.size() - pos_ >= 6 && s_[pos_] == '\\' &&
              s_[pos_ + 1] == 'u') {
            const size_t save = pos_;
            pos_ += 2;
            uint32_t low = 0;
            if (!read_hex4(low)) return false;
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              pos_ = save;  // not a pair: emit the high surrogate alone, reread the next one
            }
          }
          append_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;  // unterminated
  }

  // Number token per the JSON grammar. `integer` is set when it is a plain non-negative
  // integer (no sign, fraction or exponent) that is at most Number.MAX_SAFE_INTEGER.
  bool read_number(std::optional<int64_t>& integer) {
    integer.reset();
    skip_ws();
    const size_t start = pos_;
    bool negative = false;
    if (pos_ < s_.size() && s_[pos_] == '-') {
      negative = true;
      ++pos_;
    }
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) return false;
    const size_t int_start = pos_;
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    const size_t int_end = pos_;
    bool plain = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return false;
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
      plain = false;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return false;
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
      plain = false;
    }
    (void)start;
    if (plain && !negative && int_end - int_start <= 16) {
      int64_t v = 0;
      for (size_t i = int_start; i < int_end; ++i) v = v * 10 + (s_[i] - '0');
      if (v <= kMaxSafeInteger) integer = v;
    }
    return true;
  }

  bool read_literal(std::string_view word) {
    skip_ws();
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // Any JSON value, discarded.
  bool skip_value(int depth) {
    if (depth > kMaxDepth) return false;
    const char c = peek();
    if (c == '"') {
      std::string ignored;
      return read_string(ignored);
    }
    if (c == '{') {
      ++pos_;
      if (consume('}')) return true;
      do {
        std::string ignored;
        if (!read_string(ignored) || !consume(':') || !skip_value(depth + 1)) return false;
      } while (consume(','));
      return consume('}');
    }
    if (c == '[') {
      ++pos_;
      if (consume(']')) return true;
      do {
        if (!skip_value(depth + 1)) return false;
      } while (consume(','));
      return consume(']');
    }
    if (c == 't') return read_literal("true");
    if (c == 'f') return read_literal("false");
    if (c == 'n') return read_literal("null");
    std::optional<int64_t> ignored;
    return read_number(ignored);
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  bool read_hex4(uint32_t& out) {
    if (s_.size() - pos_ < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) return false;
      v = v * 16 + static_cast<uint32_t>(d);
    }
    out = v;
    return true;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// The JSON object of an open packet, with nothing after it but JSON whitespace. Repeated keys
// behave as in JSON.parse (the last one wins), since that is what the client will use.
std::optional<OpenPacket> parse_open_json(std::string_view json) {
  JsonReader r(json);
  if (!r.consume('{')) return std::nullopt;
  OpenPacket p;
  bool have_sid = false;
  if (!r.consume('}')) {
    do {
      std::string key;
      if (!r.read_string(key) || !r.consume(':')) return std::nullopt;
      if (key == "sid") {
        if (r.peek() != '"') return std::nullopt;
        if (!r.read_string(p.sid)) return std::nullopt;
        have_sid = true;
      } else if (key == "upgrades") {
        if (!r.consume('[')) return std::nullopt;
        p.upgrades.clear();
        if (!r.consume(']')) {
          do {
            std::string u;
            if (r.peek() != '"' || !r.read_string(u)) return std::nullopt;
            p.upgrades.push_back(std::move(u));
          } while (r.consume(','));
          if (!r.consume(']')) return std::nullopt;
        }
      } else if (key == "pingInterval" || key == "pingTimeout" || key == "maxPayload") {
        std::optional<int64_t> v;
        if (!r.read_number(v) || !v) return std::nullopt;
        if (key == "pingInterval") {
          p.ping_interval_ms = *v;
        } else if (key == "pingTimeout") {
          p.ping_timeout_ms = *v;
        } else {
          p.max_payload = *v;
        }
      } else {
        if (!r.skip_value(1)) return std::nullopt;
      }
    } while (r.consume(','));
    if (!r.consume('}')) return std::nullopt;
  }
  if (!r.at_end()) return std::nullopt;
  if (!have_sid || p.sid.empty()) return std::nullopt;
  return p;
}

// "0{...}": an open packet (type '0') whose data is the JSON object.
std::optional<OpenPacket> parse_packet(std::string_view packet) {
  if (packet.empty() || packet[0] != '0') return std::nullopt;
  return parse_open_json(packet.substr(1));
}

// Byte length of the first `units` UTF-16 code units of UTF-8 text (what a JS string length
// counts), or nullopt when the text is shorter. Invalid bytes count as one unit each, as the
// replacement character a decoder would make of them.
std::optional<size_t> utf16_prefix_bytes(std::string_view s, uint64_t units) {
  size_t pos = 0;
  uint64_t counted = 0;
  while (counted < units) {
    if (pos >= s.size()) return std::nullopt;
    const unsigned char c = static_cast<unsigned char>(s[pos]);
    size_t len = 1;
    uint64_t weight = 1;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      weight = 2;
    }
    if (len > 1) {
      bool ok = s.size() - pos >= len;
      for (size_t k = 1; ok && k < len; ++k) {
        ok = (static_cast<unsigned char>(s[pos + k]) & 0xC0) == 0x80;
      }
      if (!ok) {
        len = 1;
        weight = 1;
      }
    }
    if (counted + weight > units) return std::nullopt;  // would split a surrogate pair
    counted += weight;
    pos += len;
  }
  return pos;
}

std::optional<OpenPacket> parse_eio3_text(std::string_view body) {
  size_t pos = 0;
  uint64_t length = 0;
  while (pos < body.size() && body[pos] >= '0' && body[pos] <= '9') {
    if (pos >= 7) return std::nullopt;
    length = length * 10 + static_cast<uint64_t>(body[pos] - '0');
    ++pos;
  }
  if (pos == 0 || pos >= body.size() || body[pos] != ':' || length == 0) return std::nullopt;
  const std::string_view rest = body.substr(pos + 1);
  auto bytes = utf16_prefix_bytes(rest, length);
  if (!bytes) return std::nullopt;
  return parse_packet(rest.substr(0, *bytes));
}

std::optional<OpenPacket> parse_eio3_binary(std::string_view body) {
  // 0x00 (string packet), length digits as byte values 0-9, 0xFF, then that many bytes.
  if (body.empty() || body[0] != '\0') return std::nullopt;
  size_t pos = 1;
  uint64_t length = 0;
  while (pos < body.size() && static_cast<unsigned char>(body[pos]) <= 9) {
    if (pos > 7) return std::nullopt;
    length = length * 10 + static_cast<unsigned char>(body[pos]);
    ++pos;
  }
  if (pos == 1 || pos >= body.size() || static_cast<unsigned char>(body[pos]) != 0xFF ||
      length == 0) {
    return std::nullopt;
  }
  const std::string_view rest = body.substr(pos + 1);
  if (length > rest.size()) return std::nullopt;
  return parse_packet(rest.substr(0, length));
}

}  // namespace

std::optional<OpenPacket> parse_open_packet(std::string_view body) {
  if (body.empty()) return std::nullopt;
  const char first = body[0];
  if (first == '\0') return parse_eio3_binary(body);
  if (first == '0' && (body.size() < 2 || body[1] < '0' || body[1] > '9')) {
    // EIO4: packets separated by 0x1E (never raw inside JSON, which escapes controls).
    const size_t sep = body.find('\x1e');
    return parse_packet(body.substr(0, sep));
  }
  if (first >= '0' && first <= '9') return parse_eio3_text(body);
  return std::nullopt;
}

std::optional<OpenPacket> parse_open_packet_ws(std::string_view frame_payload) {
  return parse_packet(frame_payload);
}

bool is_reflectable_sid(std::string_view sid) {
  return !sid.empty() && sid.size() <= 256 && is_cookie_octets(sid);
}

}  // namespace stickyd
