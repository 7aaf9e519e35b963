// AdminServer: a small HTTP/1.1 server on the proxy's loop.
//
// Each connection parses requests with llhttp; the callbacks only record (bounded: URL,
// Authorization value and body are the only bytes kept), and the complete request is
// answered synchronously from the model. The parser pauses after every request, so
// pipelined requests are answered in order, and a client that does not read its responses
// stops being read (at most one read's worth of unparsed bytes is kept).
#include <llhttp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <exception>

#include "stickyd/admin.hpp"
#include "stickyd/log.hpp"
#include "stickyd/net.hpp"
#include "stickyd/query.hpp"

namespace stickyd {

namespace {

constexpr size_t kMaxUrl = 8 * 1024;
constexpr size_t kMaxAuthorization = 4 * 1024;
constexpr Millis kLingerTimeout{2000};

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    default: return "Error";
  }
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

// ---------------------------------------------------------------- JSON out

void append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
      }
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else {
      // Pass valid UTF-8 through; anything else becomes U+FFFD.
      size_t n = 0;
      if (c >= 0xc2 && c <= 0xdf) n = 2;
      else if (c >= 0xe0 && c <= 0xef) n = 3;
      else if (c >= 0xf0 && c <= 0xf4) n = 4;
      bool ok = n != 0 && i + n <= s.size();
      uint32_t cp = 0;
      if (ok) {
        cp = n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < n; ++k) {
          unsigned char cc = static_cast<unsigned char>(s[i + k]);
          if ((cc & 0xc0) != 0x80) {
            ok = false;
            break;
          }
          cp = (cp << 6) | (cc & 0x3f);
        }
      }
      if (ok) {
        static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
        ok = cp >= kMin[n] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
      }
      if (ok) {
        out.append(s.substr(i, n));
        i += n;
      } else {
        out += "\\ufffd";
        ++i;
      }
    }
  }
  out += '"';
}

void append_backend_json(std::string& out, const BackendStatus& b) {
  out += "{\"name\":";
  append_json_string(out, b.name);
  out += ",\"address\":";
  append_json_string(out, b.address);
  out += ",\"state\":";
  append_json_string(out, b.state);
  out += ",\"health\":";
  append_json_string(out, b.health);
  out += ",\"weight\":" + std::to_string(b.weight);
  out += ",\"effective_weight\":" + std::to_string(b.effective_weight);
  out += ",\"sessions\":" + std::to_string(b.sessions);
  out += ",\"connections\":" + std::to_string(b.connections);
  out += ",\"tunnels\":" + std::to_string(b.tunnels);
  out += ",\"requests\":" + std::to_string(b.requests);
  if (!b.discovered_by.empty()) {
    out += ",\"discovered\":{\"name\":";
    append_json_string(out, b.discovered_by);
    out += ",\"identity\":";
    append_json_string(out, b.identity);
    out += b.in_dns ? ",\"in_dns\":true}" : ",\"in_dns\":false}";
  }
  if (b.has_eviction) {
    const EvictionStatus& e = b.eviction;
    out += ",\"eviction\":{\"over_ms\":" + std::to_string(e.over_ms);
    out += ",\"elapsed_ms\":" + std::to_string(e.elapsed_ms);
    out += ",\"total\":" + std::to_string(e.total);
    out += ",\"evicted\":" + std::to_string(e.evicted);
    out += ",\"left_on_their_own\":" + std::to_string(e.gone);
    out += e.done ? ",\"done\":true" : ",\"done\":false";
    out += e.cancelled ? ",\"cancelled\":true}" : ",\"cancelled\":false}";
  }
  out += '}';
}

std::string json_error(std::string_view message) {
  std::string out = "{\"error\":";
  append_json_string(out, message);
  out += "}\n";
  return out;
}

// ---------------------------------------------------------------- JSON in (flat objects)

struct JsonValue {
  bool is_string = false;
  std::string text;  // decoded string, or the raw token of a number/true/false/null
};

class FlatJson {
 public:
  explicit FlatJson(std::string_view s) : s_(s) {}

  // Parses `{"k": scalar, ...}`; the last value of `key` (JSON.parse semantics) lands in
  // `found`. Nested objects and arrays are refused.
  bool parse(std::string_view key, std::optional<JsonValue>& found) {
    ws();
    if (!eat('{')) return false;
    ws();
    if (eat('}')) return end();
    for (;;) {
      std::string k;
      ws();
      if (!string(k)) return false;
      ws();
      if (!eat(':')) return false;
      ws();
      JsonValue v;
      if (peek() == '"') {
        v.is_string = true;
        if (!string(v.text)) return false;
      } else if (!scalar(v.text)) {
        return false;
      }
      if (k == key) found = std::move(v);
      ws();
      if (eat(',')) continue;
      if (eat('}')) return end();
      return false;
    }
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool eat(char c) {
    if (peek() != c || i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n'))
      ++i_;
  }
  bool end() {
    ws();
    return i_ == s_.size();
  }
  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(uint32_t& v) {
    if (i_ + 4 > s_.size()) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = hexval(s_[i_++]);
      if (h < 0) return false;
      v = (v << 4) | static_cast<uint32_t>(h);
    }
    return true;
  }
  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  bool string(std::string& out) {
    if (!eat('"')) return false;
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo;
            if (!eat('\\') || !eat('u') || !hex4(lo) || lo < 0xdc00 || lo > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return false;
          }
          utf8(out, cp);
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  // A number, true, false or null, as its raw token (validated loosely: the consumers are
  // strict about what they accept).
  bool scalar(std::string& out) {
    size_t start = i_;
    while (i_ < s_.size()) {
      char c = s_[i_];
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '+' ||
                c == '.' || c == 'E';
      if (!ok) break;
      ++i_;
    }
    if (i_ == start) return false;
    out.assign(s_.substr(start, i_ - start));
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// `N`, 0..max, digits only (no sign, no leading zeros beyond "0").
std::optional<uint32_t> parse_weight_digits(std::string_view s, uint32_t max) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return std::nullopt;
  return static_cast<uint32_t>(v);
}

std::optional<AdminState> parse_state_body(std::string_view body) {
  body = trim(body);
  if (!body.empty() && (body.front() == '{' || body.front() == '"')) {
    std::optional<JsonValue> v;
    if (body.front() == '{') {
      if (!FlatJson(body).parse("state", v)) return std::nullopt;
    } else {  // a bare JSON string
      std::string wrapped = "{\"state\":" + std::string(body) + "}";
      if (!FlatJson(wrapped).parse("state", v)) return std::nullopt;
    }
    if (!v || !v->is_string) return std::nullopt;
    return parse_admin_state(v->text);
  }
  return parse_admin_state(body);
}

std::optional<uint32_t> parse_weight_body(std::string_view body) {
  body = trim(body);
  if (!body.empty() && body.front() == '{') {
    std::optional<JsonValue> v;
    if (!FlatJson(body).parse("weight", v) || !v || v->is_string) return std::nullopt;
    return parse_weight_digits(v->text, AdminServer::kMaxWeight);
  }
  return parse_weight_digits(body, AdminServer::kMaxWeight);
}

// Percent-decodes one path segment; nullopt on a malformed escape.
std::optional<std::string> decode_segment(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto hv = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hv(s[i + 1]), lo = hv(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

const char* to_string(AdminState s) {
  switch (s) {
    case AdminState::Ready: return "ready";
    case AdminState::Drain: return "drain";
    case AdminState::Maint: return "maint";
  }
  return "?";
}

std::optional<Millis> parse_evict_over(std::string_view query) {
  std::optional<std::string> v = query_param(query, "over");
  if (!v) return kDefaultEvictOver;
  std::optional<Millis> d = parse_duration(*v);
  if (!d || d->count() < 0 || *d > kMaxEvictOver) return std::nullopt;
  return d;
}

std::optional<AdminState> parse_admin_state(std::string_view s) {
  if (s == "ready") return AdminState::Ready;
  if (s == "drain") return AdminState::Drain;
  if (s == "maint") return AdminState::Maint;
  return std::nullopt;
}

// ---------------------------------------------------------------- connection

class AdminServer::Conn final : public Socket {
 public:
  explicit Conn(AdminServer& server) : Socket(server.loop_), server_(&server) {
    llhttp_init(&parser_, HTTP_REQUEST, settings());
    parser_.data = this;
  }

  // Admitted as one of `ip`'s connections (counted in the server's per_ip_ until it closes);
  // `seq` orders connections by age.
  void start(std::string ip, uint64_t seq) {
    uv_tcp_nodelay(tcp(), 1);
    peer_ = std::move(ip);
    seq_ = seq;
    admitted_ = true;
    set_deadline(wait_limit());
    start_reading();
  }

  // Closing gives the address's place back at once: the handles close at the end of this
  // loop iteration, after its new connections (the same address's among them) are accepted.
  void close() {
    release();
    Socket::close();
  }

  // The server is going away: this connection frees itself once closed.
  void orphan() { server_ = nullptr; }

  // May make room for a newcomer when every place is taken: admitted, never authenticated.
  bool evictable() const { return admitted_ && !authenticated_; }
  uint64_t seq() const { return seq_; }
  const std::string& peer() const { return peer_; }

 private:
  enum class Header : uint8_t { Other, Authorization, Expect };
  enum class Pause : uint8_t { None, MessageDone };

  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_message_begin = cb_message_begin;
      st.on_url = cb_url;
      st.on_header_field = cb_header_field;
      st.on_header_field_complete = cb_header_field_complete;
      st.on_header_value = cb_header_value;
      st.on_header_value_complete = cb_header_value_complete;
      st.on_headers_complete = cb_headers_complete;
      st.on_body = cb_body;
      st.on_message_complete = cb_message_complete;
      return st;
    }();
    return &s;
  }

  static Conn* self(llhttp_t* p) { return static_cast<Conn*>(p->data); }

  // How long the next request may take to arrive whole, idle time before it included. Not
  // moved by the bytes that arrive meanwhile (a slowloris gets no more time).
  Millis wait_limit() const {
    if (authenticated_) return server_->idle_timeout_;
    return std::min(server_->cfg_.request_timeout, server_->idle_timeout_);
  }

  // ---- llhttp trampolines: record only, bounded

  static int cb_message_begin(llhttp_t* p) {
    Conn* c = self(p);
    c->in_request_ = true;
    c->url_.clear();
    c->field_.clear();
    c->auth_.clear();
    c->expect_.clear();
    c->body_.clear();
    c->auth_count_ = 0;
    c->head_bytes_ = 0;
    c->error_status_ = 0;
    c->header_ = Header::Other;
    return 0;
  }

  bool count_head(size_t n) {
    head_bytes_ += n;
    if (head_bytes_ > kMaxHead) {
      error_status_ = 431;
      return false;
    }
    return true;
  }

  static int cb_url(llhttp_t* p, const char* at, size_t n) {
    Conn* c = self(p);
    if (c->url_.size() + n > kMaxUrl) {
      c->error_status_ = 414;
      return -1;
    }
    if (!c->count_head(n)) return -1;
    c->url_.append(at, n);
    return 0;
  }

  static int cb_header_field(llhttp_t* p, const char* at, size_t n) {
    Conn* c = self(p);
    if (!c->count_head(n)) return -1;
    // Only short names matter; a long one is kept truncated (it matches nothing).
    size_t room = c->field_.size() < 32 ? 32 - c->field_.size() : 0;
    c->field_.append(at, std::min(n, room));
    if (n > room) c->field_ += '\x01';
    return 0;
  }

  static int cb_header_field_complete(llhttp_t* p) {
    Conn* c = self(p);
    if (iequals(c->field_, "authorization")) {
      c->header_ = Header::Authorization;
      ++c->auth_count_;
    } else if (iequals(c->field_, "expect")) {
      c->header_ = Header::Expect;
    } else {
      c->header_ = Header::Other;
    }
    c->field_.clear();
    return 0;
  }

  static int cb_header_value(llhttp_t* p, const char* at, size_t n) {
    Conn* c = self(p);
    if (!c->count_head(n)) return -1;
    if (c->header_ == Header::Authorization) {
      if (c->auth_.size() + n > kMaxAuthorization) {
        c->error_status_ = 431;
        return -1;
      }
      c->auth_.append(at, n);
    } else if (c->header_ == Header::Expect && c->expect_.size() < 64) {
      c->expect_.append(at, std::min<size_t>(n, 64));
    }
    return 0;
  }

  static int cb_header_value_complete(llhttp_t* p) {
    self(p)->header_ = Header::Other;
    return 0;
  }

  static int cb_headers_complete(llhttp_t* p) {
    Conn* c = self(p);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > kMaxBody) {
      c->error_status_ = 413;
      return -1;
    }
    if (iequals(trim(c->expect_), "100-continue") && llhttp_get_http_minor(p) >= 1)
      c->send("HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
  }

  static int cb_body(llhttp_t* p, const char* at, size_t n) {
    Conn* c = self(p);
    if (c->body_.size() + n > kMaxBody) {
      c->error_status_ = 413;
      return -1;
    }
    c->body_.append(at, n);
    return 0;
  }

  static int cb_message_complete(llhttp_t* p) {
    Conn* c = self(p);
    c->pause_ = Pause::MessageDone;
    c->keep_alive_ = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
  }

  // ---- bytes in

  void on_read(const char* data, size_t len) override {
    if (finishing_) return;  // lingering close: discard
    if (!pending_.empty()) {  // not expected (reading stops while bytes are pending)
      pending_.append(data, len);
      stop_reading();
      return;
    }
    execute(data, len);
  }

  void execute(const char* data, size_t len) {
    const char* p = data;
    const char* end = data + len;
    while (p < end) {
      pause_ = Pause::None;
      llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<size_t>(end - p));
      if (err == HPE_OK) return;
      if (err == HPE_PAUSED && pause_ == Pause::MessageDone) {
        p = llhttp_get_error_pos(&parser_);
        in_request_ = false;
        bool upgrade = llhttp_get_upgrade(&parser_) != 0;
        if (upgrade || llhttp_get_method(&parser_) == HTTP_CONNECT) keep_alive_ = false;
        answer();
        if (finishing_ || closing()) return;
        llhttp_resume(&parser_);
        if (write_backlogged()) {
          // The client is not reading its answers: stop reading until they drain.
          pending_.assign(p, static_cast<size_t>(end - p));
          stop_reading();
          return;
        }
        continue;
      }
      parse_error(err);
      return;
    }
  }

  void parse_error(llhttp_errno_t err) {
    int status = error_status_ ? error_status_ : 400;
    log::warn("admin bad request", {{"client", peer_},
                                    {"status", status},
                                    {"error", llhttp_errno_name(err)},
                                    {"reason", llhttp_get_error_reason(&parser_)}});
    const char* msg = status == 413   ? "request body too large"
                      : status == 414 ? "request target too long"
                      : status == 431 ? "request head too large"
                                      : "malformed request";
    head_request_ = false;
    respond(status, json_error(msg), {}, true);
  }

  // ---- answering

  void respond(int status, std::string_view body, std::string_view extra_headers,
               bool close_after, std::string_view content_type = "application/json") {
    if (!keep_alive_) close_after = true;
    std::string out;
    out.reserve(160 + extra_headers.size() + (head_request_ ? 0 : body.size()));
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason_phrase(status);
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += "\r\nCache-Control: no-store\r\n";
    out += extra_headers;
    if (close_after) out += "Connection: close\r\n";
    else if (llhttp_get_http_minor(&parser_) == 0) out += "Connection: keep-alive\r\n";
    out += "\r\n";
    if (!head_request_) out += body;
    if (!send(out)) {
      close();
      return;
    }
    if (close_after) {
      finish();
      return;
    }
    set_deadline(wait_limit());
  }

  void respond_json(int status, std::string_view body, std::string_view extra = {}) {
    respond(status, body, extra, false);
  }

  bool authorized(std::string_view path) {
    const std::string& token = server_->cfg_.token;
    if (token.empty()) return true;
    const char* reason = nullptr;
    if (auth_count_ == 0) {
      reason = "missing";
    } else if (auth_count_ > 1) {
      reason = "invalid";
    } else {
      std::string_view v = trim(auth_);
      bool ok = false;
      if (v.size() > 7 && iequals(v.substr(0, 6), "bearer") && (v[6] == ' ' || v[6] == '\t')) {
        std::string_view cred = trim(v.substr(7));
        auto d = sha256(cred);
        ok = CRYPTO_memcmp(d.data(), server_->token_digest_.data(), d.size()) == 0;
      }
      if (!ok) reason = "invalid";
    }
    if (!reason) {
      authenticated_ = true;
      return true;
    }
    log::warn("admin auth failed", {{"client", peer_}, {"reason", reason}, {"path", path}});
    std::string hdr = "WWW-Authenticate: Bearer realm=\"stickyd\"";
    if (auth_count_ > 0) hdr += ", error=\"invalid_token\"";
    hdr += "\r\n";
    respond_json(401, json_error("unauthorized"), hdr);
    return false;
  }

  void answer() {
    auto method = static_cast<llhttp_method_t>(llhttp_get_method(&parser_));
    head_request_ = method == HTTP_HEAD;
    std::string url;
    url.swap(url_);
    std::string body;
    body.swap(body_);
    try {
      route(method, url, body);
    } catch (const std::exception& e) {
      log::error("admin request failed", {{"client", peer_}, {"error", e.what()}});
      if (!closing() && !finishing_) respond(500, json_error("internal error"), {}, true);
    } catch (...) {
      log::error("admin request failed", {{"client", peer_}});
      if (!closing() && !finishing_) respond(500, json_error("internal error"), {}, true);
    }
  }

  void route(llhttp_method_t method, std::string_view url, std::string_view body) {
    std::string_view path = url.substr(0, url.find_first_of("?#"));
    if (method == HTTP_CONNECT || path.empty() || path.front() != '/') {
      respond(400, json_error("request target must be an origin-form path"), {}, true);
      return;
    }
    if (!authorized(path)) return;
    if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);

    // At most 3 segments: /backends/<name>/<field>.
    std::string_view seg[3];
    size_t nseg = 0;
    std::string_view rest = path.substr(1);
    for (;;) {
      if (nseg == 3) return not_found();
      size_t slash = rest.find('/');
      seg[nseg++] = rest.substr(0, slash);
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    for (size_t i = 0; i < nseg; ++i)
      if (seg[i].empty()) return not_found();

    bool get = method == HTTP_GET || method == HTTP_HEAD;
    static constexpr std::string_view kAllowGet = "Allow: GET, HEAD\r\n";
    static constexpr std::string_view kAllowPut = "Allow: PUT, POST\r\n";

    if (nseg == 1 && seg[0] == "health") {
      if (!get) return method_not_allowed(kAllowGet);
      return respond_json(200, "{\"status\":\"ok\"}\n");
    }
    if (nseg == 1 && seg[0] == "metrics") {
      if (!get) return method_not_allowed(kAllowGet);
      std::string text;
      server_->model_.metrics_text(text);
      return respond(200, text, {}, false, "text/plain; version=0.0.4; charset=utf-8");
    }
    if (seg[0] != "backends") return not_found();
    if (nseg == 1) {
      if (!get) return method_not_allowed(kAllowGet);
      std::vector<BackendStatus> all = server_->model_.backends();
      std::string out = "{\"backends\":[";
      for (size_t i = 0; i < all.size(); ++i) {
        if (i) out += ',';
        append_backend_json(out, all[i]);
      }
      out += "]}\n";
      return respond_json(200, out);
    }
    std::optional<std::string> name = decode_segment(seg[1]);
    if (!name) return respond_json(400, json_error("malformed backend name"));
    if (nseg == 2) {
      if (!get) return method_not_allowed(kAllowGet);
      return send_backend(*name);
    }
    if (nseg == 3 && seg[2] == "evict") {
      static constexpr std::string_view kAllowPost = "Allow: POST\r\n";
      if (method != HTTP_POST) return method_not_allowed(kAllowPost);
      if (!find(*name)) return unknown_backend();
      size_t q = url.find('?');
      std::string_view query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
      query = query.substr(0, query.find('#'));
      std::optional<Millis> over = parse_evict_over(query);
      if (!over) return respond_json(400, json_error("bad over: expected a duration such as 30s, 500ms or 2m (at most 1d)"));
      if (!server_->model_.evict(*name, *over)) return unknown_backend();
      log::info("admin evict", {{"backend", *name}, {"over_ms", over->count()}, {"client", peer_}});
      return send_backend(*name);
    }
    if (nseg != 3 || (seg[2] != "state" && seg[2] != "weight")) return not_found();
    if (method != HTTP_PUT && method != HTTP_POST) return method_not_allowed(kAllowPut);
    if (!find(*name)) return unknown_backend();
    if (seg[2] == "state") {
      std::optional<AdminState> st = parse_state_body(body);
      if (!st) return respond_json(400, json_error("bad state: expected ready, drain or maint"));
      if (!server_->model_.set_state(*name, *st)) return unknown_backend();
      log::info("admin set state", {{"backend", *name}, {"state", to_string(*st)}, {"client", peer_}});
    } else {
      std::optional<uint32_t> w = parse_weight_body(body);
      if (!w) return respond_json(400, json_error("bad weight: expected an integer 0..1000000"));
      if (!server_->model_.set_weight(*name, *w)) return unknown_backend();
      log::info("admin set weight", {{"backend", *name}, {"weight", *w}, {"client", peer_}});
    }
    send_backend(*name);
  }

  std::optional<BackendStatus> find(std::string_view name) {
    for (BackendStatus& b : server_->model_.backends())
      if (b.name == name) return std::move(b);
    return std::nullopt;
  }

  void send_backend(std::string_view name) {
    std::optional<BackendStatus> b = find(name);
    if (!b) return unknown_backend();
    std::string out;
    append_backend_json(out, *b);
    out += '\n';
    respond_json(200, out);
  }

  void not_found() { respond_json(404, json_error("not found")); }
  void unknown_backend() { respond_json(404, json_error("unknown backend")); }
  void method_not_allowed(std::string_view allow) {
    respond_json(405, json_error("method not allowed"), allow);
  }

  // ---- ends

  // Half-close after the queued answer, then read and discard until the client's EOF so the
  // kernel does not reset the connection under an unread answer. Bounded by a deadline.
  void finish() {
    if (finishing_) return;
    finishing_ = true;
    std::string().swap(pending_);
    shutdown_write();
    set_deadline(kLingerTimeout);
    if (eof_) {
      if (queued_bytes() == 0) close();
      return;
    }
    start_reading();
  }

  void on_eof() override {
    eof_ = true;
    stop_reading();
    if (finishing_) {
      if (queued_bytes() == 0) close();
      return;
    }
    if (!pending_.empty()) return;  // answered when the queued answers drain
    // A partial request cannot complete now; answers already queued are still delivered.
    if (queued_bytes() == 0) close();
    else finish();
  }

  void on_read_error(int) override { close(); }
  void on_write_error(int) override { close(); }

  void on_drained() override {
    if (finishing_) {
      if (eof_) close();
      return;
    }
    if (!pending_.empty()) {
      std::string next;
      next.swap(pending_);
      execute(next.data(), next.size());
      if (finishing_ || closing() || !pending_.empty()) return;
    }
    if (eof_) {
      if (queued_bytes() == 0) close();
      else finish();
      return;
    }
    if (!write_backlogged()) start_reading();
  }

  void on_deadline() override {
    if (finishing_ || !in_request_ || !server_) {
      close();  // idle keep-alive connection, or lingering close done
      return;
    }
    log::warn("admin client timeout",
              {{"client", peer_}, {"timeout_ms", wait_limit().count()}});
    head_request_ = false;
    keep_alive_ = false;
    respond(408, json_error("request timeout"), {}, true);
  }

  void on_closed() override {
    release();  // already done by close(), unless the handles closed some other way
    if (server_) server_->destroy(this);
    else delete this;
  }

  void release() {
    if (admitted_ && server_) server_->release(peer_);
    admitted_ = false;
  }

  AdminServer* server_;
  llhttp_t parser_;
  std::string peer_;
  std::string url_;
  std::string field_;
  std::string auth_;
  std::string expect_;
  std::string body_;
  std::string pending_;  // unparsed bytes held while the client is not reading
  size_t head_bytes_ = 0;
  uint64_t seq_ = 0;
  int error_status_ = 0;
  unsigned auth_count_ = 0;
  Header header_ = Header::Other;
  Pause pause_ = Pause::None;
  bool in_request_ = false;
  bool admitted_ = false;
  bool authenticated_ = false;  // a request carried the valid token (never without one)
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool finishing_ = false;
  bool eof_ = false;
};

// ---------------------------------------------------------------- server

AdminServer::AdminServer(uv_loop_t* loop, const AdminConfig& cfg, AdminModel& model)
    : loop_(loop), cfg_(cfg), model_(model) {
  if (!cfg_.token.empty()) token_digest_ = sha256(cfg_.token);
}

AdminServer::~AdminServer() {
  stop();
  // Connections still closing free themselves from their close callbacks.
  for (auto& [c, owned] : conns_) {
    c->orphan();
    owned.release();
  }
  conns_.clear();
}

int AdminServer::start(int inherited_fd) {
  if (stopped_ || listener_) return UV_EINVAL;
  listener_ = std::make_unique<Listener>(loop_, cfg_.listen,
                                         [this](uv_stream_t* s) { on_connection(s); });
  int r = inherited_fd >= 0 ? listener_->adopt(inherited_fd) : listener_->start();
  if (r != 0) {
    log::error("admin cannot listen", {{"address", cfg_.listen.text}, {"error", uv_strerror(r)}});
    listener_.reset();
    return r;
  }
  log::info("admin listening", {{"address", listener_->bound_address()}});
  return 0;
}

int AdminServer::listener_fd() const { return listener_ ? listener_->fd() : -1; }

void AdminServer::stop_listening() {
  if (listener_) listener_->close();
}

std::string AdminServer::bound_address() const {
  return listener_ ? listener_->bound_address() : std::string();
}

void AdminServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (listener_) listener_->close();
  std::vector<Conn*> cs;
  cs.reserve(conns_.size());
  for (auto& [c, _] : conns_) cs.push_back(c);
  for (Conn* c : cs) c->close();
}

void AdminServer::on_connection(uv_stream_t* server) {
  auto conn = std::make_unique<Conn>(*this);
  Conn* c = conn.get();
  conns_.emplace(c, std::move(conn));
  if (uv_accept(server, c->stream()) != 0 || stopped_) {
    c->close();
    return;
  }
  std::string ip = peer_ip(c->tcp());
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && it->second >= cfg_.max_connections_per_ip)
    return refuse(c, "too many connections from this address", ip);
  // Every place taken (connections from many addresses): the oldest connection that never
  // authenticated makes room, so an operator gets in unless `kMaxConnections` newer
  // connections arrive while its request does.
  if (admitted_ >= kMaxConnections && !evict_oldest_unauthenticated())
    return refuse(c, "too many connections", ip);
  ++per_ip_[ip];
  ++admitted_;
  c->start(std::move(ip), ++accepted_);
}

bool AdminServer::evict_oldest_unauthenticated() {
  Conn* oldest = nullptr;
  for (auto& [c, _] : conns_)
    if (c->evictable() && (!oldest || c->seq() < oldest->seq())) oldest = c;
  if (!oldest) return false;
  ++evicted_;
  auto now = static_cast<int64_t>(uv_now(loop_));
  if (now - last_eviction_log_ms_ >= 1000) {
    log::warn("admin connection evicted: every place taken",
              {{"client", oldest->peer()}, {"evicted_total", evicted_}});
    last_eviction_log_ms_ = now;
  }
  oldest->close();  // gives its place back at once
  return true;
}

// Closed at once; under a flood, one log line a second at most.
void AdminServer::refuse(Conn* c, const char* reason, const std::string& ip) {
  ++refused_;
  auto now = static_cast<int64_t>(uv_now(loop_));
  if (now - last_refusal_log_ms_ >= 1000) {
    log::warn("admin connection refused",
              {{"client", ip}, {"reason", reason}, {"refused_total", refused_}});
    last_refusal_log_ms_ = now;
  }
  c->close();
}

size_t AdminServer::connections_from(const std::string& ip) const {
  auto it = per_ip_.find(ip);
  return it == per_ip_.end() ? 0 : it->second;
}

void AdminServer::release(const std::string& ip) {
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  --admitted_;
}

void AdminServer::destroy(Conn* c) { conns_.erase(c); }

}  // namespace stickyd
