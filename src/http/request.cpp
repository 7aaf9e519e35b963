#include "stickyd/http_request.hpp"

#include <llhttp.h>

namespace stickyd {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 9110 5.6.2 tchar.
bool is_tchar(char c) {
  return is_alnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool valid_port(std::string_view p) {
  if (p.size() > 5) return false;
  uint32_t v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  return v <= 65535;
}

// The comma-separated elements of a field value, trimmed; empty elements kept (the caller
// decides whether they are allowed).
template <typename F>
void for_each_element(std::string_view list, F&& f) {
  for (;;) {
    size_t comma = list.find(',');
    f(trim(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

// The Transfer-Encoding of a request, RFC 9112 6.1: stickyd forwards exactly `chunked`.
HeadVerdict check_transfer_encoding(std::string_view value, int http_minor) {
  if (http_minor == 0)  // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is faulty
    return {400, "Transfer-Encoding in an HTTP/1.0 request"};
  value = trim(value);
  if (iequals(value, "chunked")) return {};
  // Other codings with chunked last are well-formed but not something stickyd (or most
  // backends) decodes: 501, as RFC 9112 6.1 says. Anything else cannot be framed: 400.
  size_t elements = 0, chunked = 0;
  bool last_chunked = false, malformed = false;
  for_each_element(value, [&](std::string_view e) {
    ++elements;
    last_chunked = iequals(e, "chunked");
    if (last_chunked) ++chunked;
    if (e.empty()) malformed = true;
    for (char c : e)
      if (!is_tchar(c)) malformed = true;  // parameters, quotes, spaces: not a coding name
  });
  if (!malformed && chunked == 1 && last_chunked && elements > 1)
    return {501, "unsupported transfer coding"};
  return {400, "Transfer-Encoding must be exactly chunked"};
}

}  // namespace

bool valid_host(std::string_view v) {
  if (v.empty()) return false;
  std::string_view host = v, port;
  if (v.front() == '[') {
    size_t close = v.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : v.substr(1, close - 1))
      if (!is_hex(c) && c != ':' && c != '.') return false;
    host = v.substr(0, close + 1);
    std::string_view rest = v.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
  } else {
    size_t colon = v.find(':');
    if (colon != std::string_view::npos) {
      host = v.substr(0, colon);
      port = v.substr(colon + 1);
      if (port.empty()) return false;
    }
    if (host.empty()) return false;
    for (size_t i = 0; i < host.size(); ++i) {
      char c = host[i];
      if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') continue;
      if (c == '%' && i + 2 < host.size() && is_hex(host[i + 1]) && is_hex(host[i + 2])) {
        i += 2;
        continue;
      }
      return false;
    }
  }
  return port.empty() || valid_port(port);
}

HeadVerdict check_request_head(const HttpHead& head, int http_major, int http_minor) {
  size_t hosts = 0, encodings = 0, lengths = 0;
  std::string_view te;
  for (size_t i = 0; i < head.count(); ++i) {
    std::string_view n = head.name(i);
    if (n.find_first_of(" \t") != std::string_view::npos)
      return {400, "whitespace between header name and colon"};  // RFC 9112 5.1
    switch (n.size()) {
      case 4:
        if (!iequals(n, "host")) break;
        if (++hosts > 1) return {400, "more than one Host header"};
        if (!valid_host(head.value(i))) return {400, "invalid Host header"};
        break;
      case 14:
        if (iequals(n, "content-length") && ++lengths > 1)
          return {400, "more than one Content-Length header"};
        break;
      case 17:
        if (!iequals(n, "transfer-encoding")) break;
        if (++encodings > 1) return {400, "more than one Transfer-Encoding header"};
        te = head.value(i);
        break;
      default:
        break;
    }
  }
  if (encodings) {
    if (lengths) return {400, "both Content-Length and Transfer-Encoding"};  // RFC 9112 6.3
    HeadVerdict v = check_transfer_encoding(te, http_minor);
    if (v.status) return v;
  }
  if (hosts == 0 && http_major == 1 && http_minor == 1)
    return {400, "HTTP/1.1 request without Host"};  // RFC 9112 3.2
  return {};
}

std::string allowed_upgrade(std::string_view value, const std::vector<std::string>& allowed) {
  std::string out;
  for_each_element(value, [&](std::string_view e) {
    for (const std::string& a : allowed) {
      if (!iequals(e, a)) continue;
      if (!out.empty()) out += ", ";
      out.append(e);
      break;
    }
  });
  return out;
}

std::string_view chunk_header(char (&buf)[24], uint64_t size) {
  static const char hex[] = "0123456789abcdef";
  char* end = buf + sizeof buf;
  char* p = end;
  *--p = '\n';
  *--p = '\r';
  do {
    *--p = hex[size & 15];
    size >>= 4;
  } while (size);
  return {p, static_cast<size_t>(end - p)};
}

bool llhttp_is_strict() {
  // Inputs only the lenient build accepts (llhttp 8 with LLHTTP_STRICT_MODE=0): two stray
  // bytes after chunk data, and a raw 0xff byte in the request target.
  static const std::string_view kLenientOnly[] = {
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloAB0\r\n\r\n",
      "GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
  };
  for (std::string_view in : kLenientOnly) {
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    if (llhttp_execute(&parser, in.data(), in.size()) == HPE_OK) return false;
  }
  return true;
}

}  // namespace stickyd
