#include "stickyd/request_reader.hpp"

namespace stickyd {

const llhttp_settings_t* RequestReader::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = cb_message_begin;
    st.on_url = cb_url;
    st.on_header_field = cb_header_field;
    st.on_header_value = cb_header_value;
    st.on_headers_complete = cb_headers_complete;
    st.on_body = cb_body;
    st.on_chunk_header = cb_chunk_header;
    st.on_chunk_complete = cb_chunk_complete;
    st.on_message_complete = cb_message_complete;
    return st;
  }();
  return &s;
}

RequestReader::RequestReader(RequestSink& sink, const Limits& limits)
    : sink_(sink), limits_(limits) {
  llhttp_init(&parser_, HTTP_REQUEST, settings());
  parser_.data = this;
}

// ---------------------------------------------------------------- llhttp trampolines

int RequestReader::fail(int status, const char* reason) {
  error_status_ = status;
  error_reason_ = reason;
  return -1;
}

int RequestReader::cb_message_begin(llhttp_t* p) {
  auto* self = static_cast<RequestReader*>(p->data);
  self->head_.clear();
  self->length_ = 0;
  self->trailer_bytes_ = 0;
  self->error_status_ = 0;
  self->error_reason_ = nullptr;
  self->framing_ = BodyFraming::None;
  self->in_body_ = false;
  self->body_follows_ = false;
  self->chunk_open_ = false;
  self->sink_.on_request_begin();
  return 0;
}

int RequestReader::cb_url(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<RequestReader*>(p->data);
  size_t total = self->head_.add_start(at, n);
  if (self->head_.start().size() > self->limits_.max_url_length) return self->fail(414);
  if (total > self->limits_.max_header_size) return self->fail(431);
  return 0;
}

int RequestReader::on_trailer_bytes(size_t n) {
  trailer_bytes_ += static_cast<uint32_t>(n);
  return trailer_bytes_ <= limits_.max_header_size ? 0 : fail(431);
}

int RequestReader::cb_header_field(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<RequestReader*>(p->data);
  // After the head, header fields are chunked trailers: never merged into the head (which
  // may not have been forwarded yet) and never forwarded.
  if (self->in_body_) return self->on_trailer_bytes(n);
  if (self->head_.add_name(at, n) > self->limits_.max_header_size ||
      self->head_.count() > self->limits_.max_headers)
    return self->fail(431);
  return 0;
}

int RequestReader::cb_header_value(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<RequestReader*>(p->data);
  if (self->in_body_) return self->on_trailer_bytes(n);
  if (self->head_.add_value(at, n) > self->limits_.max_header_size) return self->fail(431);
  return 0;
}

int RequestReader::cb_headers_complete(llhttp_t* p) {
  auto* self = static_cast<RequestReader*>(p->data);
  self->framing_ = (p->flags & F_CHUNKED)          ? BodyFraming::Chunked
                   : (p->flags & F_CONTENT_LENGTH) ? BodyFraming::Length
                                                   : BodyFraming::None;
  self->length_ = p->content_length;
  self->in_body_ = true;
  self->pause_ = Pause::HeadDone;
  return HPE_PAUSED;
}

int RequestReader::cb_body(llhttp_t* p, const char* at, size_t n) {
  // llhttp may report an empty span (the body starts at the end of a read).
  if (n) static_cast<RequestReader*>(p->data)->sink_.on_forward_body(std::string_view(at, n));
  return 0;
}

int RequestReader::cb_chunk_header(llhttp_t* p) {
  auto* self = static_cast<RequestReader*>(p->data);
  uint64_t size = p->content_length;
  if (size == 0) return 0;  // the last chunk: written with the end of the message
  if (size > kMaxChunkSize) return self->fail(400, "chunk size too large");
  char line[24];
  std::string_view framed = chunk_header(line, size);
  self->chunk_open_ = true;
  self->sink_.on_forward_body(framed);
  return 0;
}

int RequestReader::cb_chunk_complete(llhttp_t* p) {
  auto* self = static_cast<RequestReader*>(p->data);
  if (self->chunk_open_) {
    self->chunk_open_ = false;
    self->sink_.on_forward_body(kChunkEnd);
  }
  return 0;
}

int RequestReader::cb_message_complete(llhttp_t* p) {
  auto* self = static_cast<RequestReader*>(p->data);
  // The chunked body's end, without trailers; not for a message that ended with its head
  // (a CONNECT or an upgrade has no body, whatever its framing fields say).
  if (self->framing_ == BodyFraming::Chunked && self->body_follows_)
    self->sink_.on_forward_body(kLastChunk);
  self->in_body_ = false;
  self->pause_ = Pause::MessageDone;
  return llhttp_get_upgrade(p) ? 0 : HPE_PAUSED;  // an upgrade pauses by itself, right after
}

// ---------------------------------------------------------------- driving

RequestReader::Result RequestReader::ended(llhttp_errno_t err, const char* stop) {
  if (err == HPE_PAUSED && pause_ == Pause::MessageDone) return {Event::Message, stop};
  if (err == HPE_PAUSED_UPGRADE) {
    upgrade_pause_ = true;
    return {Event::Upgrade, stop};
  }
  return {Event::Error, stop};
}

RequestReader::Result RequestReader::execute(const char* p, const char* end) {
  if (pending_ != Event::NeedMore) {
    Event e = pending_;
    pending_ = Event::NeedMore;
    return {e, p};
  }
  pause_ = Pause::None;
  llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<size_t>(end - p));
  if (err == HPE_OK) return {Event::NeedMore, end};
  const char* stop = llhttp_get_error_pos(&parser_);
  if (err != HPE_PAUSED || pause_ != Pause::HeadDone) return ended(err, stop);
  llhttp_resume(&parser_);
  // llhttp checks the head's framing (Transfer-Encoding, upgrade, body length) after
  // on_headers_complete returns. Let it run on no bytes, so that a head it refuses is never
  // reported (nor forwarded): it stops before the first body byte, or at the end of a
  // bodyless message, which is then reported after the head.
  pause_ = Pause::None;
  err = llhttp_execute(&parser_, stop, 0);
  if (err == HPE_OK) {
    body_follows_ = true;
    return {Event::Head, stop};
  }
  Result r = ended(err, stop);
  if (r.event == Event::Error) return r;
  pending_ = r.event;
  return {Event::Head, stop};
}

void RequestReader::resume() {
  if (upgrade_pause_) llhttp_resume_after_upgrade(&parser_);  // it was not upgraded after all
  else llhttp_resume(&parser_);
  upgrade_pause_ = false;
}

HeadVerdict RequestReader::verdict() const {
  if (method() == HTTP_CONNECT) return {405, "CONNECT is not supported", "CONNECT refused"};
  if (http_major() == 0) return {400, "HTTP/0.9 is not supported"};
  if (http_major() != 1 || http_minor() > 1)
    return {505, "HTTP/1.0 and HTTP/1.1 only", "unsupported HTTP version"};
  std::string_view target = head_.start();
  if (target.empty() || target.front() != '/')  // absolute and asterisk forms: not a forward proxy
    return {400, "request target must be origin-form", "request target not origin-form"};
  return check_request_head(head_, http_major(), http_minor());
}

void RequestReader::append_framing(std::string& out) const {
  if (framing_ == BodyFraming::Chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (framing_ == BodyFraming::Length) {
    out.append("Content-Length: ");
    out.append(std::to_string(length_));
    out.append("\r\n");
  }
}

bool RequestReader::is_framing_field(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "transfer-encoding");
}

}  // namespace stickyd
