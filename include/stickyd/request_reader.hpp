// RequestReader: the client side's HTTP/1.1 parser driver. It runs llhttp (strict) over the
// bytes a client sent and reports one event at a time: a head llhttp has accepted whole, the
// end of a message, an upgrade, or an error. Bodies leave it already re-framed for the
// backend (exactly Content-Length bytes, or canonical chunks without extensions and without
// trailers) through RequestSink::on_forward_body, so a backend frames exactly the requests
// the reader reported (http_request.hpp says why). ClientConn forwards what it reports; the
// differential fuzz target (tests/fuzz/fuzz_smuggle.cpp) checks that claim on random bytes.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "stickyd/config.hpp"
#include "stickyd/http_head.hpp"
#include "stickyd/http_request.hpp"

namespace stickyd {

class RequestSink {
 public:
  virtual void on_request_begin() = 0;  // a new message starts (reset per-request state)
  // Body bytes for the backend, framed: data, and around it the chunk lines stickyd writes.
  virtual void on_forward_body(std::string_view bytes) = 0;

 protected:
  ~RequestSink() = default;
};

class RequestReader {
 public:
  enum class Event : uint8_t {
    NeedMore,  // every byte consumed; more are needed
    Head,      // a head llhttp accepted whole (its framing checks included): see verdict()
    Message,   // the message ended; the reader is paused until resume()
    Upgrade,   // an upgrade request ended; what follows `stop` is not HTTP (until refused)
    Error,     // refused: error_status(), reason()
  };
  struct Result {
    Event event;
    const char* stop;  // where parsing stopped in the bytes given
  };

  // `limits` must outlive the reader (Config is reloaded in place, so a pointer into it holds).
  RequestReader(RequestSink& sink, const Limits& limits);
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Parses [p, end) until the next event. After Head, call again from `stop` for the body;
  // after Message or Upgrade, the reader stays paused until resume().
  Result execute(const char* p, const char* end);
  void resume();  // after Message (next request), or after Upgrade when it was not upgraded

  // Of the current request.
  const HttpHead& head() const { return head_; }
  HttpHead& head() { return head_; }
  // What stickyd refuses of a head llhttp accepted (method, version, target form, Host,
  // framing): status 0 = forward it. `event` names the log line.
  HeadVerdict verdict() const;
  llhttp_method_t method() const { return static_cast<llhttp_method_t>(parser_.method); }
  const char* method_name() const { return llhttp_method_name(method()); }
  int http_major() const { return parser_.http_major; }
  int http_minor() const { return parser_.http_minor; }
  bool keep_alive() const { return llhttp_should_keep_alive(&parser_) != 0; }
  bool wants_upgrade() const { return parser_.upgrade != 0; }  // Connection: upgrade + Upgrade
  BodyFraming body_framing() const { return framing_; }
  uint64_t body_length() const { return length_; }  // with BodyFraming::Length
  bool bodyless() const {
    return framing_ == BodyFraming::None || (framing_ == BodyFraming::Length && length_ == 0);
  }
  // The framing field stickyd writes in the forwarded head ("Content-Length: N\r\n" or
  // "Transfer-Encoding: chunked\r\n"; nothing for a bodyless request).
  void append_framing(std::string& out) const;
  // Fields a forwarded head never copies from the client: stickyd writes its own framing.
  static bool is_framing_field(std::string_view name);

  // After Error.
  int error_status() const { return error_status_ ? error_status_ : 400; }
  const char* error_name() const { return llhttp_errno_name(llhttp_get_errno(&parser_)); }
  const char* reason() const { return error_reason_ ? error_reason_ : llhttp_get_error_reason(&parser_); }

 private:
  static const llhttp_settings_t* settings();
  static int cb_message_begin(llhttp_t* p);
  static int cb_url(llhttp_t* p, const char* at, size_t n);
  static int cb_header_field(llhttp_t* p, const char* at, size_t n);
  static int cb_header_value(llhttp_t* p, const char* at, size_t n);
  static int cb_headers_complete(llhttp_t* p);
  static int cb_body(llhttp_t* p, const char* at, size_t n);
  static int cb_chunk_header(llhttp_t* p);
  static int cb_chunk_complete(llhttp_t* p);
  static int cb_message_complete(llhttp_t* p);
  int fail(int status, const char* reason = nullptr);
  int on_trailer_bytes(size_t n);  // trailer fields are counted, never kept or forwarded
  Result ended(llhttp_errno_t err, const char* stop);

  RequestSink& sink_;
  const Limits& limits_;
  llhttp_t parser_;
  HttpHead head_;
  uint64_t length_ = 0;
  uint32_t trailer_bytes_ = 0;
  int error_status_ = 0;                // 400/414/431 decided inside a callback
  const char* error_reason_ = nullptr;  // ...and why, when llhttp's reason would not say
  BodyFraming framing_ = BodyFraming::None;
  enum class Pause : uint8_t { None, HeadDone, MessageDone };
  Pause pause_ = Pause::None;
  Event pending_ = Event::NeedMore;  // Message/Upgrade found with the head, reported next
  bool in_body_ = false;             // header callbacks now are trailers
  bool body_follows_ = false;        // llhttp went on to read a body after the head
  bool chunk_open_ = false;          // a chunk line went out; its data's CRLF is due
  bool upgrade_pause_ = false;       // paused at an upgrade (resume after upgrade)
};

}  // namespace stickyd
