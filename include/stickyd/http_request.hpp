// What a request must satisfy before stickyd forwards any byte of it, beyond what llhttp
// checks, and how its body is framed on the way to a backend.
//
// A proxy that forwards a request its backend frames differently lets a client smuggle a
// second request past it (RFC 9112 11.2). So stickyd forwards only what it parsed itself:
// a head rebuilt from the fields before the body, with framing it writes itself
// (`Content-Length: N` or `Transfer-Encoding: chunked`), and a body re-framed from the bytes
// llhttp delivered (canonical chunks without extensions, trailers dropped).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stickyd/http_head.hpp"

namespace stickyd {

// Host header value: uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2), where uri-host is
// an IP literal in brackets, or a name/IPv4 of letters, digits, '-', '.', '_', '~' and %XX.
// Stricter than RFC 3986's reg-name on purpose: sub-delims (',', ';', '!', ...) in a Host
// have no use in a real host name and let two values hide in one ("a,evil.example").
bool valid_host(std::string_view value);

// How a request's body is delimited, decided from its head.
enum class BodyFraming : uint8_t { None, Length, Chunked };

// The verdict on a request head llhttp accepted: status 0 = forward it; else the status to
// answer (400, 501) and why.
struct HeadVerdict {
  int status = 0;
  const char* reason = nullptr;
  const char* event = "bad request";  // the log line's event
};
HeadVerdict check_request_head(const HttpHead& head, int http_major, int http_minor);

// The tokens of an `Upgrade` value that `allowed` (lowercase tokens) lists, joined with ", ",
// in the client's order; empty when none is allowed (the request is then plain HTTP).
std::string allowed_upgrade(std::string_view value, const std::vector<std::string>& allowed);

// A chunk of `size` bytes as stickyd writes it: "<lowercase hex>\r\n" (the data and "\r\n"
// follow). Chunks are never larger than this: sizes above it are refused (400), as no
// backend agrees on what a 64-bit chunk size means.
inline constexpr uint64_t kMaxChunkSize = 0xffffffffULL;
std::string_view chunk_header(char (&buf)[24], uint64_t size);  // a view into buf
inline constexpr std::string_view kChunkEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// Whether the llhttp linked in was built strict (LLHTTP_STRICT_MODE=1): parses inputs that
// only the lenient build accepts and says whether all were refused. stickyd refuses to run
// on a lenient llhttp.
bool llhttp_is_strict();

}  // namespace stickyd
