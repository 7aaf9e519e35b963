#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/tls.hpp"

namespace stickyd {

const llhttp_settings_t* UpstreamConn::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = cb_message_begin;
    st.on_status = cb_status;
    st.on_header_field = cb_header_field;
    st.on_header_value = cb_header_value;
    st.on_headers_complete = cb_headers_complete;
    st.on_body = cb_body;
    st.on_message_complete = cb_message_complete;
    return st;
  }();
  return &s;
}

UpstreamConn::UpstreamConn(Server& server, int backend)
    : Socket(server.loop()), server_(server), backend_(backend) {
  llhttp_init(&parser_, HTTP_RESPONSE, settings());
  parser_.data = this;
  uv_tcp_nodelay(tcp(), 1);
}

void UpstreamConn::connect_settled() {
  if (!counted_connecting_) return;
  counted_connecting_ = false;
  --server_.router().backend(backend_).connecting;
}

void UpstreamConn::connect() {
  BackendState& b = server_.router().backend(backend_);
  ++b.connecting;
  counted_connecting_ = true;
  connect_req_.data = this;
  int r = uv_tcp_connect(&connect_req_, tcp(), b.config.address.sa(), connect_cb);
  if (r != 0) {
    // Report asynchronously-equivalent: the caller expects a callback either way.
    fail(r);
    return;
  }
  set_deadline(server_.config().timeouts.connect);
}

void UpstreamConn::connect_cb(uv_connect_t* req, int status) {
  auto* self = static_cast<UpstreamConn*>(req->data);
  self->connect_settled();
  if (status == UV_ECANCELED || self->closing()) return;
  self->clear_deadline();
  if (status < 0) {
    self->server_.connect_result(self->backend_, false);
    ClientConn* c = self->client_;
    self->client_ = nullptr;
    self->close();
    if (c) c->upstream_connect_failed(status);
    return;
  }
  self->connected_ = true;
  self->server_.connect_result(self->backend_, true);
  if (const tls::ClientContext* ctx = self->server_.backend_tls(self->backend_)) {
    // Requests written from now on are encrypted (and held until the handshake is done).
    const BackendConfig& b = self->server_.router().backend(self->backend_).config;
    std::string host = b.address.text.substr(0, b.address.text.rfind(':'));
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    self->use_tls(tls::Session::client(*ctx, host), true);
  }
  self->start_reading();
  if (self->client_) self->client_->upstream_connected();
  self->uncork();  // upstream_connected() corks the request head with early body bytes
}

void UpstreamConn::attach(ClientConn* client, bool head_request) {
  client_ = client;
  head_request_ = head_request;
  parked_ = false;
  answered_ = false;
  in_body_ = false;
  pause_ = Pause::None;
  head_.clear();
  llhttp_init(&parser_, HTTP_RESPONSE, settings());
  parser_.data = this;
  if (connected_) {
    clear_deadline();
    start_reading();
  }
}

void UpstreamConn::detach() { client_ = nullptr; }

bool UpstreamConn::reusable() const {
  return connected_ && !broken_ && !eof_ && !tunnel_ && !closing() &&
         llhttp_should_keep_alive(&parser_) != 0;
}

void UpstreamConn::park(Millis idle_timeout) {
  client_ = nullptr;
  parked_ = true;
  ++exchanges_;
  head_.release();
  start_reading();  // a parked connection only watches for the backend closing it
  set_deadline(idle_timeout);
}

void UpstreamConn::begin_tunnel(ClientConn* client) {
  client_ = client;
  tunnel_ = true;
  clear_deadline();  // the client side runs the tunnel's idle timer
  start_reading();
}

void UpstreamConn::release_head() { head_.release(); }

void UpstreamConn::on_read(const char* data, size_t len) {
  if (tunnel_) {
    if (client_) client_->upstream_tunnel_data(data, len);
    return;
  }
  if (parked_ || !client_) {
    // Bytes nobody asked for: the connection is out of sync and cannot be reused.
    if (parked_) server_.unpark(this);
    close();
    return;
  }
  set_deadline(server_.config().timeouts.server);
  answered_ = true;
  // What this read makes the client send (response head, body bytes, the end of a held
  // handshake) leaves in one write.
  ClientConn* c = client_;
  c->cork();
  execute(data, len);
  c->upstream_read_done();
}

void UpstreamConn::execute(const char* data, size_t len) {
  const char* p = data;
  const char* end = data + len;
  while (client_ && !closing()) {
    pause_ = Pause::None;
    llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<size_t>(end - p));
    const char* stop = err == HPE_OK ? end : llhttp_get_error_pos(&parser_);
    if (in_body_ && stop > p) client_->upstream_body(p, static_cast<size_t>(stop - p));
    if (!client_ || closing()) return;
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED && pause_ == Pause::HeadDone) {
      int st = status();
      // No body follows a HEAD response or an interim one, whatever its headers say.
      if (head_request_ || (st >= 100 && st < 200 && st != 101)) parser_.flags |= F_SKIPBODY;
      in_body_ = true;
      llhttp_resume(&parser_);
      client_->upstream_head();
      p = stop;
      continue;
    }
    if (err == HPE_PAUSED && pause_ == Pause::MessageDone) {
      in_body_ = false;
      int st = status();
      if (st >= 100 && st < 200 && st != 101) {
        // Interim response (100 Continue, 103): the final one follows on this connection.
        llhttp_resume(&parser_);
        head_.clear();
        p = stop;
        continue;
      }
      if (stop != end) broken_ = true;  // bytes after a complete response: never reuse
      client_->upstream_complete();
      return;
    }
    if (err == HPE_PAUSED_UPGRADE) {
      in_body_ = false;
      client_->upstream_upgraded(stop, static_cast<size_t>(end - stop));
      return;
    }
    broken_ = true;
    log::warn("invalid response from backend",
              {{"backend", server_.router().backend(backend_).config.name},
               {"error", llhttp_errno_name(err)},
               {"reason", llhttp_get_error_reason(&parser_)}});
    fail(UV_EPROTO);
    return;
  }
}

void UpstreamConn::fail(int status) {
  // A reset before any response byte counts against the node's health, like a refused
  // connect; an EOF does not (nodes close idle keep-alive connections).
  if (status == UV_ECONNRESET && connected_ && client_ && !in_body_ && pause_ == Pause::None)
    server_.connect_result(backend_, false);
  broken_ = true;
  ClientConn* c = client_;
  client_ = nullptr;
  if (parked_) server_.unpark(this);
  close();
  if (c) c->upstream_failed(status, uv_err_name(status));
}

void UpstreamConn::on_eof() {
  eof_ = true;
  if (tunnel_) {
    stop_reading();
    if (client_) client_->upstream_tunnel_eof();
    return;
  }
  if (client_ && !parked_ && llhttp_message_needs_eof(&parser_)) {
    // A response delimited by the connection's end is complete now.
    llhttp_errno_t err = llhttp_finish(&parser_);
    if (err == HPE_OK || err == HPE_PAUSED) {
      if (in_body_ || pause_ == Pause::MessageDone) {
        in_body_ = false;
        ClientConn* c = client_;
        c->upstream_complete();
        return;
      }
    }
  }
  fail(UV_EOF);
}

void UpstreamConn::on_read_error(int status) { fail(status); }

void UpstreamConn::on_tls_error(const std::string& why) {
  log::warn("backend TLS failed", {{"backend", server_.router().backend(backend_).config.name},
                                   {"error", why}});
  fail(UV_EPROTO);
}

void UpstreamConn::on_write_error(int status) {
  if (tunnel_) {
    ClientConn* c = client_;
    client_ = nullptr;
    close();
    if (c) c->upstream_failed(status, "write failed");
    return;
  }
  fail(status);
}

void UpstreamConn::on_drained() {
  if (client_) client_->upstream_drained();
}

void UpstreamConn::on_spliced(size_t n) {
  if (client_) client_->upstream_tunnel_spliced(n);
}

void UpstreamConn::on_deadline() {
  if (parked_) {  // idle too long in the pool: close before the backend does
    server_.unpark(this);
    close();
    return;
  }
  if (!connected_) {
    log::warn("backend connect timeout",
              {{"backend", server_.router().backend(backend_).config.name}});
    server_.connect_result(backend_, false);
    ClientConn* c = client_;
    client_ = nullptr;
    close();
    if (c) c->upstream_connect_failed(UV_ETIMEDOUT);
    return;
  }
  ClientConn* c = client_;
  client_ = nullptr;
  broken_ = true;
  close();
  if (c) c->upstream_timeout();
}

void UpstreamConn::on_closed() {
  connect_settled();
  // Closed from outside (Server::stop) while still serving a client: the client must not
  // touch us again. (A client that closed first has already detached itself.)
  if (client_) client_->forget_upstream(this);
  if (parked_) server_.unpark(this);
  server_.destroy(this);
}

int UpstreamConn::cb_message_begin(llhttp_t* p) {
  static_cast<UpstreamConn*>(p->data)->head_.clear();
  return 0;
}

int UpstreamConn::cb_status(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<UpstreamConn*>(p->data);
  return self->head_.add_start(at, n) > 256 * 1024 ? -1 : 0;
}

int UpstreamConn::cb_header_field(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<UpstreamConn*>(p->data);
  return self->head_.add_name(at, n) > 256 * 1024 ? -1 : 0;
}

int UpstreamConn::cb_header_value(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<UpstreamConn*>(p->data);
  return self->head_.add_value(at, n) > 256 * 1024 ? -1 : 0;
}

int UpstreamConn::cb_headers_complete(llhttp_t* p) {
  static_cast<UpstreamConn*>(p->data)->pause_ = Pause::HeadDone;
  return HPE_PAUSED;
}

int UpstreamConn::cb_body(llhttp_t* p, const char* at, size_t n) {
  auto* self = static_cast<UpstreamConn*>(p->data);
  if (self->client_ && n) self->client_->upstream_decoded(at, n);
  return 0;
}

int UpstreamConn::cb_message_complete(llhttp_t* p) {
  auto* self = static_cast<UpstreamConn*>(p->data);
  self->pause_ = Pause::MessageDone;
  // An upgrade stops with HPE_PAUSED_UPGRADE on its own; anything else stops here so
  // nothing after the response is parsed as part of this exchange.
  return llhttp_get_upgrade(p) ? 0 : HPE_PAUSED;
}

}  // namespace stickyd
