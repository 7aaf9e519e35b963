// fuzz_smuggle: differential request-smuggling target. Random client bytes go through the
// request path stickyd forwards from (RequestReader: strict llhttp, head verdict, body
// re-framing, trailers dropped), delivered in read-sized pieces the input chooses; what
// would be written to the backend (head as ClientConn builds it: the request line, fields
// other than hop-by-hop and framing, stickyd's framing; then the re-framed body) is parsed
// again by a fresh strict llhttp, as a backend would. Invariants:
//   - the backend's parse of the forwarded bytes never fails;
//   - it frames exactly the requests stickyd accepted and completed, in order: same method,
//     target, version, header fields, and body bytes (the body as llhttp decoded it from the
//     client); nothing more (a partial last request may be left incomplete, never completed);
//   - a request stickyd refused sends nothing at all.
#include <llhttp.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_common.hpp"
#include "stickyd/config.hpp"
#include "stickyd/request_reader.hpp"

using namespace stickyd;

namespace {

struct Request {
  int method = 0;
  int minor = 0;
  std::string target;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string body;
  bool complete = false;
};

// The backend: a plain strict llhttp collecting every request it frames.
struct Backend {
  llhttp_t parser;
  llhttp_settings_t settings;
  std::vector<Request> requests;
  bool in_value = false;

  static Backend* of(llhttp_t* p) { return static_cast<Backend*>(p->data); }
  Backend() {
    llhttp_settings_init(&settings);
    settings.on_message_begin = [](llhttp_t* p) {
      of(p)->requests.emplace_back();
      of(p)->in_value = false;
      return 0;
    };
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
      of(p)->requests.back().target.append(at, n);
      return 0;
    };
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      Backend* b = of(p);
      if (b->requests.back().fields.empty() || b->in_value) b->requests.back().fields.emplace_back();
      b->in_value = false;
      b->requests.back().fields.back().first.append(at, n);
      return 0;
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      Backend* b = of(p);
      b->in_value = true;
      b->requests.back().fields.back().second.append(at, n);
      return 0;
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      Request& r = of(p)->requests.back();
      r.method = p->method;
      r.minor = p->http_minor;
      // The framing fields are stickyd's own: compared through the body instead.
      std::erase_if(r.fields, [](const auto& f) { return RequestReader::is_framing_field(f.first); });
      return 0;
    };
    settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
      of(p)->requests.back().body.append(at, n);
      return 0;
    };
    settings.on_message_complete = [](llhttp_t* p) {
      of(p)->requests.back().complete = true;
      // An upgrade request ends the HTTP stream for the backend as for stickyd.
      return 0;
    };
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
  }
};

// stickyd's side: the reader, what it forwards, and what it accepted.
struct Proxy final : RequestSink {
  Limits limits;
  RequestReader reader{*this, limits};
  std::string wire;                // bytes for the backend
  std::vector<Request> accepted;   // heads stickyd forwarded, with their decoded bodies
  std::vector<size_t> starts;      // where each forwarded request begins in `wire`
  bool forwarding = false;         // the current request's head was forwarded
  std::string raw_body;            // the current request's body as llhttp decoded it

  Proxy() {
    limits.max_header_size = 4096;  // small, so the fuzzer reaches the limits
    limits.max_url_length = 1024;
    limits.max_headers = 32;
  }
  void on_request_begin() override {
    forwarding = false;
    raw_body.clear();
  }
  void on_forward_body(std::string_view bytes) override {
    FUZZ_CHECK(forwarding);  // no body byte before its head was accepted
    wire.append(bytes);
  }
  void forward_head() {
    const HttpHead& h = reader.head();
    Request r;
    r.method = reader.method();
    r.minor = reader.http_minor();
    r.target.assign(h.start());
    starts.push_back(wire.size());
    wire.append(reader.method_name());
    wire += ' ';
    wire.append(h.start());
    wire.append(r.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    for (size_t i = 0; i < h.count(); ++i) {
      if (h.is_hop_by_hop(i) || RequestReader::is_framing_field(h.name(i))) continue;
      r.fields.emplace_back(h.name(i), h.value(i));
      wire.append(h.name(i));
      wire.append(": ");
      wire.append(h.value(i));
      wire.append("\r\n");
    }
    reader.append_framing(wire);
    wire.append("\r\n");
    accepted.push_back(std::move(r));
    forwarding = true;
  }
};

// What the body decoded to, told apart from the chunk lines around it: llhttp's own view of
// the client's bytes, with no re-framing (a second reader over the same bytes).
struct Decoder {
  llhttp_t parser;
  llhttp_settings_t settings;
  std::vector<std::string> bodies;
  Decoder() {
    llhttp_settings_init(&settings);
    settings.on_message_begin = [](llhttp_t* p) {
      static_cast<Decoder*>(p->data)->bodies.emplace_back();
      return 0;
    };
    settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
      static_cast<Decoder*>(p->data)->bodies.back().append(at, n);
      return 0;
    };
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte chooses the read size (1..32 bytes, or everything at once): the request
  // path must not depend on where reads split the stream.
  size_t piece = data[0] % 33;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (piece == 0) piece = in.size() ? in.size() : 1;

  Proxy proxy;
  Decoder decoder;
  std::string pending;  // bytes after a message, parsed after the exchange (as ClientConn)
  bool done = false;
  size_t completed = 0;  // accepted requests whose message ended
  for (size_t off = 0; off < in.size() && !done; off += piece) {
    pending.append(in.substr(off, piece));
    std::string buf;
    buf.swap(pending);
    const char* p = buf.data();
    const char* end = buf.data() + buf.size();
    while (!done) {
      RequestReader::Result r = proxy.reader.execute(p, end);
      if (r.event == RequestReader::Event::NeedMore) {
        p = r.stop;  // everything was consumed
        break;
      }
      if (r.event == RequestReader::Event::Error) {
        done = true;  // 400 and close; a forwarded part stays incomplete at the backend
        break;
      }
      if (r.event == RequestReader::Event::Head) {
        if (proxy.reader.verdict().status) {
          done = true;  // refused before anything was forwarded
          break;
        }
        proxy.forward_head();
        p = r.stop;
        continue;
      }
      // Message or Upgrade: the exchange ends.
      ++completed;
      // As ClientConn: only an allowed token on a GET becomes a tunnel.
      bool upgraded = r.event == RequestReader::Event::Upgrade && proxy.reader.method() == HTTP_GET &&
                      !allowed_upgrade(proxy.reader.head().get("upgrade"), {"websocket"}).empty();
      if (upgraded || !proxy.reader.keep_alive()) {
        done = true;  // a tunnel (bytes are no longer HTTP) or the connection closes
        break;
      }
      proxy.reader.resume();
      p = r.stop;
    }
    if (!done) pending.assign(p, static_cast<size_t>(end - p));
  }
  // The client's decoded bodies: llhttp over the same bytes without re-framing.
  llhttp_execute(&decoder.parser, in.data(), in.size());

  // The backend's view of what stickyd forwarded.
  Backend backend;
  const char* at = proxy.wire.data();
  const char* wire_end = at + proxy.wire.size();
  llhttp_errno_t err = llhttp_execute(&backend.parser, at, proxy.wire.size());
  while (err == HPE_CLOSED_CONNECTION) {
    // An HTTP/1.0 request is forwarded without keep-alive: the backend closes after it, and
    // what follows goes on another connection (a new parser).
    FUZZ_CHECK(backend.requests.size() < proxy.starts.size());
    at = proxy.wire.data() + proxy.starts[backend.requests.size()];
    llhttp_init(&backend.parser, HTTP_REQUEST, &backend.settings);
    backend.parser.data = &backend;
    err = llhttp_execute(&backend.parser, at, static_cast<size_t>(wire_end - at));
  }
  if (err != HPE_OK) {
    FUZZ_CHECK(err == HPE_PAUSED_UPGRADE);  // the only way the forwarded stream may stop
    FUZZ_CHECK(backend.requests.size() == proxy.accepted.size());
  }
  FUZZ_CHECK(backend.requests.size() == proxy.accepted.size());
  for (size_t i = 0; i < backend.requests.size(); ++i) {
    const Request& got = backend.requests[i];
    const Request& sent = proxy.accepted[i];
    FUZZ_CHECK(got.method == sent.method);
    FUZZ_CHECK(got.minor == sent.minor);
    FUZZ_CHECK(got.target == sent.target);
    FUZZ_CHECK(got.fields == sent.fields);
    // Completed exactly when stickyd completed it (the last one may be cut short).
    FUZZ_CHECK(got.complete == (i < completed));
    // Body: what llhttp decoded from the client for the same request (the decoder saw the
    // same messages in the same order; refused ones are never among the accepted).
    if (got.complete && i < decoder.bodies.size()) FUZZ_CHECK(got.body == decoder.bodies[i]);
  }
  return 0;
}
