// ClientConn: one client connection and the state machine of its current exchange.
//
//   Idle -> RequestHead -> Connecting -> Forwarding -> Responding -> Idle (keep-alive)
//                                         |  \-> HoldingHandshake -> Responding
//                                         \-> Tunnel (101)
//   any state -> Closing (error, timeout, either side gone)
//
// The llhttp callbacks only record; the execute() loop drives the machine. Nothing the client
// sent is relayed raw: the head is rebuilt from the fields llhttp parsed before the body, and
// sent only once llhttp has accepted the whole head; the body is re-framed from the data
// llhttp delivered (exactly Content-Length bytes, or canonical chunks), streamed, never
// accumulated; chunked trailers are dropped. A backend therefore frames exactly the requests
// stickyd parsed (see http_request.hpp).
#include <algorithm>
#include <cstring>
#include <ctime>

#include "stickyd/cookie.hpp"
#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/rewrite.hpp"
#include "stickyd/tls.hpp"
#include "stickyd/ws_frame.hpp"

namespace stickyd {

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 501: return "Not Implemented";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

// Heads are built here and sent at once (send() copies whatever the kernel does not take):
// one buffer per loop thread, reused, instead of a new string per request.
std::string& head_scratch() {
  thread_local std::string s;
  return s;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

}  // namespace

ClientConn::ClientConn(Server& server, std::shared_ptr<const tls::ServerContext> tls,
                       bool secure_cookies, Millis handshake_timeout)
    : Socket(server.loop()), server_(server), tls_ctx_(std::move(tls)),
      secure_cookies_(secure_cookies), handshake_timeout_(handshake_timeout),
      reader_(*this, server.config().limits), head_(reader_.head()) {}

void ClientConn::start() {
  uv_tcp_nodelay(tcp(), 1);
  peer_ip_ = peer_ip(tcp());
  client_hash_ = hash_bytes(peer_ip_);
  if (!server_.admit(peer_ip_)) {
    close();
    return;
  }
  admitted_ = true;
  if (tls_ctx_) {
    use_tls(tls::Session::server(*tls_ctx_), false);
    // A handshake that never finishes is cut short; the client timeout runs after it.
    set_deadline(handshake_timeout_);
  } else {
    idle_since_ms_ = server_.now_ms();
    set_idle_deadline();
  }
  start_reading();
}

// ---------------------------------------------------------------- request reader events

void ClientConn::on_request_begin() {
  state_ = State::RequestHead;
  started_ms_ = server_.now_ms();
  head_sent_ = false;
  status_ = 0;
  bytes_to_client_ = 0;
  route_ = Route{};
  settled_ = false;
  head_parsed_ = false;
  local_ = false;
  local_answer_ = false;
}

// ---------------------------------------------------------------- client bytes

void ClientConn::on_read(const char* data, size_t len) {
  if (state_ == State::Tunnel) {
    set_deadline(server_.config().timeouts.tunnel);
    server_.metrics().bytes_to_backend(route_.backend, len);
    if (upstream_ && !upstream_->send(std::string_view(data, len))) abort("backend write failed");
    update_reading();
    return;
  }
  if (state_ == State::Closing) return;
  if (!tls_ctx_ && !seen_bytes_ && state_ == State::Idle && len >= 3 && data[0] == 0x16 &&
      data[1] == 0x03) {
    // A TLS ClientHello on a plain HTTP port: an HTTP error page would only be noise to a TLS
    // client. Say so in the log and close.
    log::warn("TLS handshake on a plain HTTP listener", {{"client", peer_ip_}});
    abort(nullptr);
    return;
  }
  seen_bytes_ = true;
  // While an exchange waits for its response, or earlier bytes wait their turn, new bytes
  // queue behind them: responses go back in request order.
  if (!pending_.empty() || request_done_ || reader_paused_) {
    pending_.append(data, len);
    update_reading();
    return;
  }
  // The head of a new request must be complete within client_header, however slowly its
  // bytes trickle in (slowloris): the deadline starts with its first byte and is not reset.
  if (state_ == State::Idle) set_deadline(server_.config().timeouts.client_header);
  execute(data, len);
}

void ClientConn::execute(const char* data, size_t len) {
  const char* p = data;
  const char* end = data + len;
  for (;;) {
    RequestReader::Result r = reader_.execute(p, end);
    if (state_ == State::Closing) return;  // forwarding a body failed
    switch (r.event) {
      case RequestReader::Event::NeedMore:
        return;
      case RequestReader::Event::Head:
        on_request_head();
        if (state_ == State::Closing) return;
        p = r.stop;
        continue;
      case RequestReader::Event::Message:
      case RequestReader::Event::Upgrade:
        // The reader stays paused: what follows is the next request (or early tunnel bytes),
        // parsed after this exchange ends.
        reader_paused_ = true;
        pending_.append(r.stop, static_cast<size_t>(end - r.stop));
        on_request_complete();
        return;
      case RequestReader::Event::Error:
        parse_error();
        return;
    }
  }
}

void ClientConn::parse_error() {
  int status = reader_.error_status();
  bool in_body = head_parsed_ && !request_done_;
  log::warn("bad request", {{"client", peer_ip_},
                            {"status", status},
                            {"error", reader_.error_name()},
                            {"reason", reader_.reason()}});
  // Before any response byte went out the client gets its 400, even mid-body (HAProxy does
  // the same); a backend connection the request was streaming to is closed, never reused.
  // After that, only closing can tell the client.
  respond_local(status, reason_phrase(status), in_body ? "malformed request body" : "malformed request");
}

void ClientConn::on_request_head() {
  clear_deadline();
  request_done_ = false;
  head_sent_ = false;
  retried_ = false;
  hold_gave_up_ = false;
  status_ = 0;
  bytes_to_client_ = 0;
  llhttp_method_t method = reader_.method();
  head_request_ = method == HTTP_HEAD;
  HeadVerdict verdict = reader_.verdict();
  head_parsed_ = verdict.status != 405;  // a CONNECT's access line names no method
  if (verdict.status) {
    log::warn(verdict.event, {{"client", peer_ip_},
                              {"status", verdict.status},
                              {"reason", verdict.reason},
                              {"target", head_.start()}});
    respond_local(verdict.status, reason_phrase(verdict.status), verdict.reason);
    return;
  }
  // Only an allowed token on a GET is upgraded (a websocket handshake is a GET, RFC 6455
  // 4.1); any other upgrade request goes on as plain HTTP without its Upgrade header, so
  // nothing but a websocket can become a tunnel (no h2c smuggling).
  upgrade_requested_ = false;
  upgrade_value_.clear();
  method_get_ = method == HTTP_GET;
  if (reader_.wants_upgrade()) {
    if (method == HTTP_GET)
      upgrade_value_ = allowed_upgrade(head_.get("upgrade"), server_.config().upgrade_protocols);
    upgrade_requested_ = !upgrade_value_.empty();
    if (!upgrade_requested_)
      log::debug("upgrade not allowed: proxied as plain HTTP",
                 {{"client", peer_ip_}, {"upgrade", head_.get("upgrade")}});
  }
  std::string_view target = head_.start();
  // The Cookie header as the router wants it: every Cookie line joined with "; " (almost
  // always there is exactly one, used as it is).
  std::string_view cookies;
  std::string joined;
  for (size_t i = 0; i < head_.count(); ++i) {
    if (!iequals(head_.name(i), "cookie")) continue;
    if (cookies.data() == nullptr) {
      cookies = head_.value(i);
    } else {
      if (joined.empty()) joined.assign(cookies);
      joined.append("; ");
      joined.append(head_.value(i));
      cookies = joined;
    }
  }
  server_.router().route_into(route_, target, cookies, client_hash_, server_.now_ms());
  if (route_.local_status == 400) {
    log::info("session's backend gone: client told to re-handshake", {{"client", peer_ip_},
                                                                      {"sid", route_.key}});
    respond_engineio_session_unknown();
    return;
  }
  if (route_.backend < 0) {
    log::warn("no backend usable", {{"client", peer_ip_}});
    respond_local(503, reason_phrase(503), "no backend available");
    return;
  }
  pinned_ = server_.router().pin(route_, server_.now_ms());
  ++server_.router().backend(route_.backend).in_flight;
  in_flight_ = true;
  early_body_.clear();
  acquire_upstream(true);
}

void ClientConn::build_upstream_head(std::string& out) const {
  out.clear();
  out.append(reader_.method_name());
  out += ' ';
  if (route_.strip_tag && route_.source == KeySource::Query) {
    std::string t = replace_query_param(head_.start(), "sid", route_.key);  // the backend's own sid
    out.append(route_.strip_hint ? remove_query_param(t, server_.config().sticky.reconnect_hint) : t);
  } else if (route_.strip_hint) {
    out.append(remove_query_param(head_.start(), server_.config().sticky.reconnect_hint));
  } else {
    out.append(head_.start());
  }
  out.append(reader_.http_minor() == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  std::string forwarded_for;
  for (size_t i = 0; i < head_.count(); ++i) {
    std::string_view n = head_.name(i);
    if (head_.is_hop_by_hop(i)) continue;
    if (RequestReader::is_framing_field(n)) continue;  // stickyd writes its own (below)
    if (iequals(n, "x-forwarded-for")) {
      if (!forwarded_for.empty()) forwarded_for += ", ";
      forwarded_for.append(head_.value(i));
      continue;
    }
    if (iequals(n, "x-forwarded-proto")) continue;  // we say how the client reached us
    if (iequals(n, "cookie") && (route_.strip_tag || route_.strip_prefix ||
                                 route_.strip_server_cookie)) {
      std::string c = forwarded_cookie(head_.value(i));
      if (!c.empty()) append_field(out, n, c);
      continue;
    }
    append_field(out, n, head_.value(i));
  }
  if (!peer_ip_.empty()) {
    if (!forwarded_for.empty()) forwarded_for += ", ";
    forwarded_for += peer_ip_;
  }
  if (!forwarded_for.empty()) append_field(out, "X-Forwarded-For", forwarded_for);
  append_field(out, "X-Forwarded-Proto", tls_ctx_ ? "https" : "http");
  reader_.append_framing(out);
  if (upgrade_requested_) {
    append_field(out, "Connection", "Upgrade");
    append_field(out, "Upgrade", upgrade_value_);
  }
  out.append("\r\n");
}

std::string ClientConn::forwarded_cookie(std::string_view header) const {
  const Config& cfg = server_.config();
  std::string c(header);
  const Persistence& p = server_.router().persistence();
  if (route_.strip_tag) {
    c = edit_cookie_header(c, cfg.cookie.name, [&](std::string_view v) -> std::optional<std::string> {
      if (auto t = p.parse_tag(v)) return std::string(t->untagged);
      return std::string(v);
    });
  }
  const ServerCookieConfig& sc = cfg.sticky.server_cookie;
  if (route_.strip_prefix) {
    c = edit_cookie_header(c, sc.name, [](std::string_view v) -> std::optional<std::string> {
      size_t tilde = v.find('~');
      return std::string(tilde == std::string_view::npos ? v : v.substr(tilde + 1));
    });
  }
  if (route_.strip_server_cookie)
    c = edit_cookie_header(c, sc.name, [](std::string_view) { return std::nullopt; });
  return c;
}

void ClientConn::acquire_upstream(bool allow_reuse) {
  bool reused = false;
  upstream_ = server_.acquire_upstream(route_.backend, allow_reuse, reused);
  if (!upstream_) {
    log::warn("too many pending connections to backend",
              {{"backend", server_.router().backend(route_.backend).config.name}});
    respond_local(503, reason_phrase(503), "backend busy");
    return;
  }
  upstream_->attach(this, head_request_);
  if (reused) {
    state_ = State::Forwarding;
    upstream_connected();
  } else {
    state_ = State::Connecting;
    upstream_->connect();
  }
}

void ClientConn::upstream_connected() {
  if (!upstream_) return;
  state_ = State::Forwarding;
  // The head, early body bytes and (within this client read) the rest of the body that came
  // with them leave in one write. Uncorked at the end of the current libuv callback.
  upstream_->cork();
  // Built from the parsed head each time it is sent (once, or twice for a retry): the head
  // and the route stay as they are until the response, so no copy is kept.
  std::string& head = head_scratch();
  build_upstream_head(head);
  if (log::enabled(LogLevel::Debug))  // what the backend parses: the smuggling tests compare
    log::debug("forwarded head", {{"client", peer_ip_},
                                  {"backend", server_.router().backend(route_.backend).config.name},
                                  {"head", head}});
  bool ok = upstream_->send(head);
  if (ok && !early_body_.empty()) ok = upstream_->send(early_body_);
  std::string().swap(early_body_);
  if (!ok) {
    upstream_failed(UV_EPIPE, "write failed");
    return;
  }
  upstream_->set_deadline(server_.config().timeouts.server);
  update_reading();
}

void ClientConn::on_forward_body(std::string_view bytes) {
  if (state_ == State::Closing) return;
  set_deadline(server_.config().timeouts.body_idle_or_client());  // silent mid-body: 408
  // Answered already (or not routed, which the reader rules out): nowhere to go.
  if (local_answer_ || route_.backend < 0) return;
  server_.metrics().bytes_to_backend(route_.backend, bytes.size());
  if (state_ == State::Connecting) {
    early_body_.append(bytes);
  } else if (upstream_) {
    if (!upstream_->send(bytes)) abort("backend write failed");
  }
  update_reading();
}

void ClientConn::on_request_complete() {
  request_done_ = true;
  keep_alive_ = reader_.keep_alive();
  clear_deadline();  // from here the backend's timeout applies
  if (local_answer_) {
    finish_exchange();
    return;
  }
  update_reading();
}

// ---------------------------------------------------------------- backend events

void ClientConn::upstream_connect_failed(int status) {
  upstream_ = nullptr;
  const std::string& name = server_.router().backend(route_.backend).config.name;
  log::warn("backend connect failed", {{"backend", name}, {"error", uv_strerror(status)}});
  // A reconnect hint named a node that does not answer (dead, and no check has said so yet):
  // nothing was sent, and a new session elsewhere is what the client gets anyway when its
  // node is gone, better than an error.
  if (route_.via == RouteVia::Hint && !retried_ && !head_sent_) {
    int b = server_.router().balance_excluding(route_.backend, client_hash_, server_.now_ms());
    if (b >= 0) {
      retried_ = true;
      if (in_flight_) --server_.router().backend(route_.backend).in_flight;
      route_.backend = b;
      route_.via = RouteVia::Balance;
      ++server_.router().backend(b).in_flight;
      in_flight_ = true;
      acquire_upstream(false);
      return;
    }
  }
  respond_local(502, reason_phrase(502), "backend unavailable");
}

void ClientConn::upstream_head() {
  if (!upstream_) return;
  int st = upstream_->status();
  if (st == 101) {
    // A 101 that llhttp does not take as an upgrade (no `Upgrade`, or no `Connection:
    // upgrade`) would leave client and backend in different protocols.
    if (!upstream_->upgraded())
      upstream_failed(UV_EPROTO, "101 without Upgrade and Connection: upgrade");
    return;  // a valid one starts the tunnel in upstream_upgraded()
  }
  if (st >= 100 && st < 200) {
    // Interim response: pass it on unless the client spoke HTTP/1.0, which cannot take it.
    if (reader_.http_minor() >= 1) {
      std::string out = "HTTP/1.1 " + std::to_string(st) + " ";
      out.append(upstream_->head().start());
      out.append("\r\n");
      for (size_t i = 0; i < upstream_->head().count(); ++i)
        if (!upstream_->head().is_hop_by_hop(i))
          append_field(out, upstream_->head().name(i), upstream_->head().value(i));
      out.append("\r\n");
      send(out);
    }
    return;
  }
  status_ = st;
  if (route_.handshake && st == 200 && !head_request_ &&
      upstream_->head().get("content-encoding").empty()) {
    // Read the small handshake body before sending anything: the Set-Cookie we may add
    // goes in the head, and the head needs the sid from the body.
    state_ = State::HoldingHandshake;
    hold_raw_.clear();
    hold_body_.clear();
    return;
  }
  ResponseEdit edit;
  if (route_.handshake && st == 200) {
    // A body we cannot read (compressed): learn from the node's cookie if it sent one; no
    // tagging, since the open packet the client reads would disagree with the cookie.
    std::string_view from_cookie = session_cookie_in(upstream_->head());
    if (!from_cookie.empty()) learn_and_cookie(from_cookie, nullptr, nullptr);
    else log::warn("handshake sid not learnt", {{"reason", "compressed or bodiless response"}});
  }
  state_ = State::Responding;
  write_response_head(edit);
}

void ClientConn::write_response_head(const ResponseEdit& edit) {
  const HttpHead& h = upstream_->head();
  const Config& cfg = server_.config();
  const ServerCookieConfig& sc = cfg.sticky.server_cookie;
  const Persistence& persistence = server_.router().persistence();
  int64_t now_s = static_cast<int64_t>(std::time(nullptr));  // HAProxy cookie dates: wall clock
  int st = upstream_->status();
  bool upgrade = st == 101;
  // Draining (SIGTERM): the response says the connection ends with it (HAProxy's
  // idle-close-on-response), so the client sends nothing more on it.
  if (!upgrade && (!keep_alive_ || upstream_->response_needs_eof() ||
                   reader_.http_minor() == 0 || server_.draining()))
    close_after_response_ = true;
  auto prefixed = [&](std::string_view value) {
    const BackendConfig& b = cfg.backends[static_cast<size_t>(route_.backend)];
    return (b.cookie.empty() ? b.name : b.cookie) + "~" + std::string(value);
  };
  std::string& out = head_scratch();
  out.clear();
  out.append(upstream_->http_minor() == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.append(std::to_string(st));
  out += ' ';
  out.append(h.start());
  out.append("\r\n");
  bool server_set_cookie = false;  // insert+preserve: the node set the server cookie itself
  bool has_cache_control = false;
  for (size_t i = 0; i < h.count(); ++i) {
    if (h.is_hop_by_hop(i)) continue;
    std::string_view n = h.name(i);
    std::string_view v = h.value(i);
    if (edit.body && (iequals(n, "content-length") || iequals(n, "transfer-encoding"))) continue;
    if (iequals(n, "cache-control")) has_cache_control = true;
    if (iequals(n, "set-cookie")) {
      auto pair = parse_set_cookie_pair(v);
      std::string rewritten;
      if (pair && pair->name == cfg.cookie.name && !edit.tagged_sid.empty() &&
          pair->value == edit.backend_sid) {
        rewritten = replace_set_cookie_value(v, edit.tagged_sid);
        v = rewritten;
        pair = parse_set_cookie_pair(v);
      }
      if (pair && sc.enabled && pair->name == sc.name) {
        if (sc.mode == ServerCookieMode::Insert) {
          if (!sc.preserve) continue;  // ours replaces it
          server_set_cookie = true;
        } else if (sc.mode == ServerCookieMode::Rewrite) {
          rewritten = replace_set_cookie_value(
              v, persistence.server_cookie_value(route_.backend, now_s, route_.server_cookie_first_seen));
          v = rewritten;
        } else {
          rewritten = replace_set_cookie_value(v, prefixed(pair->value));
          v = rewritten;
        }
      }
      append_field(out, n, v);
      continue;
    }
    append_field(out, n, v);
  }
  if (edit.body) append_field(out, "Content-Length", std::to_string(edit.body->size()));
  if (!edit.inject_cookie.empty()) {
    if (sc.enabled && sc.mode == ServerCookieMode::Prefix && sc.name == cfg.cookie.name) {
      auto pair = parse_set_cookie_pair(edit.inject_cookie);
      append_field(out, "Set-Cookie",
                   pair ? replace_set_cookie_value(edit.inject_cookie, prefixed(pair->value))
                        : edit.inject_cookie);
    } else {
      append_field(out, "Set-Cookie", edit.inject_cookie);
    }
  }
  if (sc.enabled && sc.mode == ServerCookieMode::Insert && !server_set_cookie &&
      (!route_.server_cookie_ok || route_.refresh_server_cookie)) {
    std::string inserted =
        persistence.insert_set_cookie(route_.backend, now_s, route_.server_cookie_first_seen);
    if (secure_cookies_ && !sc.secure) inserted += "; Secure";
    append_field(out, "Set-Cookie", inserted);
    // nocache: a shared cache must not hand this cookie to other clients.
    if (sc.nocache && !has_cache_control) append_field(out, "Cache-Control", "private");
  }
  for (const HeaderSetting& hs : cfg.headers.all) append_field(out, hs.name, hs.value);
  if (route_.handshake && (st == 200 || st == 101))
    for (const HeaderSetting& hs : cfg.headers.handshake) append_field(out, hs.name, hs.value);
  if (upgrade) {
    append_field(out, "Connection", "Upgrade");
    append_field(out, "Upgrade", h.get("upgrade"));
  } else if (close_after_response_) {
    append_field(out, "Connection", "close");
  }
  out.append("\r\n");
  head_sent_ = true;
  if (!send(out)) abort("client write failed");
}

void ClientConn::upstream_body(const char* raw, size_t n) {
  if (state_ == State::HoldingHandshake) {
    hold_raw_.append(raw, n);
    if (hold_raw_.size() > server_.config().limits.max_handshake_body) {
      // Not a handshake we can read: stop holding and stream it as it is.
      log::warn("handshake response too large to learn the sid",
                {{"backend", server_.router().backend(route_.backend).config.name}});
      state_ = State::Responding;
      write_response_head(ResponseEdit{});
      if (state_ == State::Closing) return;
      std::string held;
      held.swap(hold_raw_);
      std::string().swap(hold_body_);
      bytes_to_client_ += held.size();
      if (!send(held)) abort("client write failed");
    }
    return;
  }
  if (state_ != State::Responding) return;
  bytes_to_client_ += n;
  if (!send(std::string_view(raw, n))) {
    abort("client write failed");
    return;
  }
  if (write_backlogged() && upstream_) upstream_->stop_reading();
}

void ClientConn::upstream_decoded(const char* data, size_t n) {
  if (state_ == State::HoldingHandshake && hold_body_.size() < server_.config().limits.max_handshake_body)
    hold_body_.append(data, n);
}

void ClientConn::learn_and_cookie(std::string_view sid_from_cookie, const OpenPacket* open,
                                  ResponseEdit* edit) {
  const CookieConfig& cc = server_.config().cookie;
  std::string_view sid = !sid_from_cookie.empty() ? sid_from_cookie
                         : open                   ? std::string_view(open->sid)
                                                  : std::string_view();
  const std::string& backend = server_.router().backend(route_.backend).config.name;
  if (sid.empty()) {
    log::warn("handshake sid not found", {{"backend", backend}});
    return;
  }
  server_.router().learn(sid, route_.backend, open, server_.now_ms());
  server_.metrics().handshake(route_.backend);
  if (route_.key.empty()) route_.key = std::string(sid);  // for the access log
  if (log::enabled(LogLevel::Debug))  // the fields are copies: build them only when used
    log::debug("sid learnt", {{"sid", sid},
                              {"backend", backend},
                              {"from", sid_from_cookie.empty() ? "open-packet" : "set-cookie"}});
  if (!edit) return;
  std::string_view value = sid;
  const Persistence& p = server_.router().persistence();
  if (p.proxy_tags() && open && is_reflectable_sid(sid)) {
    edit->backend_sid = std::string(sid);
    edit->tagged_sid = p.tag(route_.backend, sid);
    value = edit->tagged_sid;
  }
  if (!cc.inject || !sid_from_cookie.empty()) return;
  if (!is_reflectable_sid(value)) {
    log::warn("sid not reflected into a cookie: unsafe characters", {{"sid", sid}});
    return;
  }
  std::optional<std::string> v;
  if (secure_cookies_ && !cc.secure) {
    CookieConfig secure = cc;  // TLS listener: the injected cookie travels only over TLS
    secure.secure = true;
    v = serialize_set_cookie(secure, value);
  } else {
    v = serialize_set_cookie(cc, value);
  }
  if (v) edit->inject_cookie = std::move(*v);
}

void ClientConn::finish_handshake_hold() {
  std::string_view from_cookie = session_cookie_in(upstream_->head());
  std::optional<OpenPacket> open = parse_open_packet(hold_body_);
  if (!open)
    log::warn("handshake without a readable open packet",
              {{"backend", server_.router().backend(route_.backend).config.name},
               {"body", hold_body_}});
  ResponseEdit edit;
  learn_and_cookie(from_cookie, open ? &*open : nullptr, &edit);
  std::string body;
  if (!edit.tagged_sid.empty()) {
    if (auto b = replace_open_packet_sid(hold_body_, edit.backend_sid, edit.tagged_sid)) {
      body = std::move(*b);
      edit.body = &body;
    } else {
      log::warn("open packet not tagged: sid not found in it", {{"sid", edit.backend_sid}});
      edit.tagged_sid.clear();
    }
  }
  state_ = State::Responding;
  write_response_head(edit);
  if (state_ == State::Closing) return;
  std::string held;
  held.swap(edit.body ? body : hold_raw_);
  std::string().swap(hold_raw_);
  std::string().swap(hold_body_);
  bytes_to_client_ += held.size();
  if (!send(held)) abort("client write failed");
}

void ClientConn::upstream_complete() {
  if (!upstream_) return;
  if (state_ == State::HoldingHandshake) {
    finish_handshake_hold();
    if (state_ == State::Closing) return;
  } else if (!head_sent_) {
    write_response_head(ResponseEdit{});  // e.g. a response with no body bytes at all
    if (state_ == State::Closing) return;
  }
  release_upstream(request_done_);
  if (request_done_) {
    finish_exchange();
    return;
  }
  // The backend answered before the request body ended: the rest of the body has nowhere
  // to go, so this connection ends with this response.
  settle("early-response");
  close_gracefully();
}

void ClientConn::release_upstream(bool keep) {
  if (!upstream_) return;
  UpstreamConn* u = upstream_;
  upstream_ = nullptr;
  if (keep && u->reusable()) {
    // Parked connections keep reading (to see the backend close them): no stop/start,
    // which would cost two epoll_ctl calls per request.
    server_.park_upstream(u);
  } else {
    u->stop_reading();
    u->detach();
    u->close();
  }
}

void ClientConn::finish_exchange() {
  settle("done");
  state_ = State::Idle;
  request_done_ = false;
  reader_paused_ = false;
  if (close_after_response_ || !keep_alive_) {
    close_gracefully();
    return;
  }
  // Still open when draining only if its response head went out before the drain began
  // (without Connection: close): it waits idle like the others (set_idle_deadline).
  head_.release();  // an idle connection keeps no buffers
  idle_since_ms_ = server_.now_ms();
  set_idle_deadline();
  seen_bytes_ = false;
  reader_.resume();
  upgrade_requested_ = false;
  if (!pending_.empty()) {
    std::string next;
    next.swap(pending_);
    seen_bytes_ = true;
    execute(next.data(), next.size());
  }
  update_reading();
}

// The new session's sid, pinned while its tunnel is open. route_.via stays how the handshake
// was routed (balance, hint, cookie...): the access log says so.
void ClientConn::pin_learnt(std::string_view sid) {
  route_.key = std::string(sid);
  pinned_ = server_.router().table().pin(route_.key, server_.now_ms());
}

std::string_view ClientConn::session_cookie_in(const HttpHead& h) const {
  std::string_view found;
  for (size_t i = 0; i < h.count(); ++i) {
    if (!iequals(h.name(i), "set-cookie")) continue;
    auto pair = parse_set_cookie_pair(h.value(i));
    if (pair && pair->name == server_.config().cookie.name) found = pair->value;
  }
  return found;
}

void ClientConn::upstream_failed(int status, const char* what) {
  UpstreamConn* u = upstream_;
  upstream_ = nullptr;
  if (u) {
    u->detach();
    u->close();
  }
  if (state_ == State::Tunnel) {
    log::info("backend closed the tunnel", {{"backend", server_.router().backend(route_.backend).config.name},
                                            {"client", peer_ip_}, {"sid", route_.key}});
    abort(nullptr);
    return;
  }
  // A pooled connection the backend closed just as we reused it (EOF or reset, not one byte
  // of answer): the backend never processed the request. Replay it once on a fresh
  // connection, and only an idempotent, bodyless one: a request the backend may have acted on
  // (any byte received, an invalid answer, a POST) is never sent twice.
  llhttp_method_t method = reader_.method();
  bool idempotent = method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS;
  bool bodyless = reader_.bodyless();
  bool closed_unanswered = (status == UV_EOF || status == UV_ECONNRESET || status == UV_EPIPE) &&
                           u && !u->answered();
  if (!head_sent_ && u && u->reused() && !retried_ && request_done_ && bodyless && idempotent &&
      closed_unanswered && state_ != State::HoldingHandshake) {
    retried_ = true;
    log::debug("retrying on a fresh backend connection", {{"error", what}});
    acquire_upstream(false);
    return;
  }
  const std::string& name = server_.router().backend(route_.backend).config.name;
  if (!head_sent_ && state_ != State::Closing) {
    log::warn("backend failed before responding",
              {{"backend", name}, {"error", what}, {"status", uv_err_name(status)}});
    respond_local(502, reason_phrase(502),
                  status == UV_EPROTO ? "invalid response from backend" : "backend closed the connection");
    return;
  }
  log::warn("backend failed mid-response", {{"backend", name}, {"error", what}});
  abort("backend failed mid-response");
}

void ClientConn::upstream_timeout() {
  upstream_ = nullptr;
  const std::string& name = server_.router().backend(route_.backend).config.name;
  if (state_ == State::Tunnel) {
    abort("tunnel timeout");
    return;
  }
  if (!head_sent_) {
    log::warn("backend timeout", {{"backend", name}});
    respond_local(504, reason_phrase(504), "backend timeout");
    return;
  }
  log::warn("backend timeout mid-response", {{"backend", name}});
  abort("backend timeout mid-response");
}

void ClientConn::upstream_drained() {
  if (tunnel_finished()) return;
  update_reading();
}

void ClientConn::upstream_read_done() {
  uncork();  // a failed write calls on_write_error()
  if (state_ == State::Responding && upstream_ && write_backlogged()) upstream_->stop_reading();
  // The 101 (corked with the first backend bytes) is out: the tunnel may switch to splice.
  if (state_ == State::Tunnel) update_reading();
}

void ClientConn::respond_local(int status, std::string_view reason, std::string_view detail) {
  status_ = status;
  if (head_sent_ || state_ == State::Closing) {
    abort(nullptr);
    return;
  }
  release_upstream(false);
  std::string body(detail);
  body += '\n';
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  out.append(reason);
  out.append("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  out.append(std::to_string(body.size()));
  // Error answers end the connection: the rest of the request (or the next ones) cannot be
  // trusted to be in sync.
  out.append("\r\nConnection: close\r\n\r\n");
  out.append(body);
  head_sent_ = true;
  bytes_to_client_ = body.size();
  send(out);
  local_ = true;
  settle("local");
  close_gracefully();
}

void ClientConn::close_gracefully() {
  // Half-close after the queued response, then read and discard until the client's EOF:
  // closing with unread input would make the kernel send RST, and the client could lose
  // the response it has not read yet (nginx's lingering close). Bounded by a deadline.
  state_ = State::Closing;
  release_upstream(false);
  shutdown_write();
  set_deadline(Millis(2000));
  if (client_eof_) {
    if (queued_bytes() == 0) close();
    return;
  }
  start_reading();
}

void ClientConn::abort(const char* why) {
  if (why) log::debug("connection aborted", {{"client", peer_ip_}, {"why", why}});
  settle("aborted");
  release_session();
  release_upstream(false);
  state_ = State::Closing;
  close();
}

void ClientConn::update_reading() {
  if (state_ == State::Closing) return;  // lingering: reads are drained and discarded
  if (client_eof_) {
    stop_reading();
    // A half-closed tunnel still carries the backend's bytes: resume them once drained.
    if (state_ == State::Tunnel && upstream_ && !spliced() && !write_backlogged())
      upstream_->start_reading();
    return;
  }
  bool want;
  if (state_ == State::Tunnel) {
    if (maybe_splice()) return;  // both sockets are polled by the splice code
    want = !(upstream_ && upstream_->write_backlogged());
    if (upstream_ && !write_backlogged()) upstream_->start_reading();
  } else {
    want = pending_.size() <= kHighWater && early_body_.size() <= kHighWater &&
           !(upstream_ && upstream_->write_backlogged()) && !write_backlogged();
    if (upstream_ && upstream_->connected() && !write_backlogged()) upstream_->start_reading();
  }
  if (want) start_reading(); else stop_reading();
}

void ClientConn::settle(const char* outcome, bool keep_pin) {
  if (!keep_pin) release_pin();
  if (settled_) return;
  if (local_) outcome = "local";
  settled_ = true;
  Router& router = server_.router();
  if (in_flight_) {
    --router.backend(route_.backend).in_flight;
    in_flight_ = false;
  }
  Metrics& m = server_.metrics();
  int64_t ms = server_.now_ms() - started_ms_;
  if (local_) m.local_response(route_.backend, status_);
  else if (status_) m.response(route_.backend, status_);
  m.bytes_to_client(route_.backend, bytes_to_client_);
  m.observe_latency(static_cast<double>(ms) / 1000.0);
  const Config& cfg = server_.config();
  if (!cfg.access_log && !log::enabled(LogLevel::Debug)) return;
  std::string backend = route_.backend >= 0 ? router.backend(route_.backend).config.name : "-";
  const char* method =
      head_parsed_ ? reader_.method_name() : "-";
  std::initializer_list<log::Field> fields = {
      {"client", peer_ip_},        {"method", method},
      {"target", head_.start()},   {"status", status_},
      {"backend", backend},        {"sid", route_.key},
      {"key", to_string(route_.source)}, {"via", to_string(route_.via)},
      {"bytes", bytes_to_client_}, {"ms", ms},
      {"outcome", outcome}};
  if (cfg.access_log && cfg.access_log_json) log::json_line(fields);
  else log::write(cfg.access_log ? LogLevel::Info : LogLevel::Debug, "request", fields);
}

void ClientConn::release_pin() {
  if (pinned_) {
    server_.router().unpin(route_, server_.now_ms());
    pinned_ = false;
  }
}

void ClientConn::release_session() {
  release_pin();
  if (tunnel_counted_) {
    --server_.router().backend(route_.backend).tunnels;
    server_.metrics().tunnel_closed(route_.backend);
    if (!route_.key.empty()) server_.tunnel_closed(this, route_.key);
    tunnel_counted_ = false;
  }
}

void ClientConn::respond_engineio_session_unknown() {
  // Exactly what engine.io answers for a sid it does not know: the client re-handshakes.
  static constexpr std::string_view body = R"({"code":1,"message":"Session ID unknown"})";
  status_ = 400;
  local_ = true;
  std::string out = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ";
  out += std::to_string(body.size());
  std::string_view origin = head_.get("origin");
  if (!origin.empty()) {
    // Browsers only let the client read the error with CORS headers, as engine.io sends them.
    out += "\r\nAccess-Control-Allow-Origin: ";
    out += origin;
    out += "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin";
  }
  if (server_.draining()) {
    close_after_response_ = true;
    out += "\r\nConnection: close";
  }
  out += "\r\n\r\n";
  out += body;
  head_sent_ = true;
  bytes_to_client_ = body.size();
  if (!send(out)) {
    abort("client write failed");
    return;
  }
  // The rest of the request (a POST body) is read and dropped; then the connection goes on.
  state_ = State::Responding;
  local_answer_ = true;
  if (request_done_) finish_exchange();
}

// ---------------------------------------------------------------- socket events

void ClientConn::on_eof() {
  client_eof_ = true;
  stop_reading();
  if (state_ == State::Tunnel) {
    if (upstream_) upstream_->shutdown_write();  // half-close travels on (after the queue)
    tunnel_finished();
    return;
  }
  if (state_ == State::Idle && pending_.empty()) {
    close();
    state_ = State::Closing;
    return;
  }
  if (state_ == State::Closing) {
    close();
    return;
  }
  // The client went away mid-exchange (e.g. during a held poll): release the backend
  // connection now instead of waiting for the response nobody will read.
  abort("client closed mid-exchange");
}

void ClientConn::on_tls_error(const std::string& why) {
  log::warn("TLS handshake failed", {{"client", peer_ip_}, {"error", why}});
  abort(nullptr);
}

void ClientConn::on_tls_established() {
  if (state_ == State::Idle && !seen_bytes_) {
    idle_since_ms_ = server_.now_ms();
    set_idle_deadline();
  }
}

void ClientConn::set_idle_deadline() {
  const Timeouts& t = server_.config().timeouts;
  Millis limit = t.keepalive_or_client();
  if (server_.draining()) limit = std::min(limit, t.drain_idle);
  int64_t left = idle_since_ms_ + limit.count() - server_.now_ms();
  set_deadline(Millis(std::max<int64_t>(left, 0)));
}

void ClientConn::drain() {
  if (!idle()) return;  // busy: its response carries Connection: close
  if (tls_ctx_ && tls() && !tls()->handshake_done()) return;  // the handshake deadline runs
  set_idle_deadline();
}

void ClientConn::on_read_error(int status) {
  (void)status;
  abort("client read error");
}

void ClientConn::on_write_error(int status) {
  (void)status;
  abort("client write error");
}

void ClientConn::on_drained() {
  if (state_ == State::Closing) {
    if (client_eof_) close();
    return;
  }
  if (tunnel_finished()) return;
  update_reading();
}

void ClientConn::on_deadline() {
  switch (state_) {
    case State::Idle:
      if (tls_ctx_ && tls() && !tls()->handshake_done()) {
        log::warn("TLS handshake timeout", {{"client", peer_ip_}});
        abort(nullptr);
        return;
      }
      if (!seen_bytes_ && pending_.empty()) {
        abort(nullptr);  // keep-alive idle timeout: close silently
        return;
      }
      [[fallthrough]];
    case State::RequestHead:
      log::warn("client timeout", {{"client", peer_ip_}});
      respond_local(408, reason_phrase(408), "request timeout");
      return;
    case State::HoldingUpgrade:
      log::warn("no open packet after 101", {{"client", peer_ip_}});
      finish_upgrade_hold(true);
      return;
    case State::Tunnel:
      log::info("tunnel idle timeout", {{"client", peer_ip_}, {"sid", route_.key}});
      abort(nullptr);
      return;
    case State::Closing:
      close();
      return;
    default:
      // Waiting on the backend or streaming a request body: a silent client mid-body.
      if (!request_done_) {
        log::warn("client timeout mid-body", {{"client", peer_ip_}});
        if (head_sent_) abort(nullptr);
        else respond_local(408, reason_phrase(408), "request timeout");
      }
      return;
  }
}

void ClientConn::on_closed() {
  if (admitted_) server_.release_ip(peer_ip_);
  settle("closed");
  release_session();
  server_.metrics().client_closed();
  if (upstream_) {
    UpstreamConn* u = upstream_;
    upstream_ = nullptr;
    u->detach();
    u->close();
  }
  server_.destroy(this);
}

}  // namespace stickyd
