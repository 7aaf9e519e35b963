// ClientConn, websocket side: the 101 of an upgrade (held until the open packet of a
// websocket-first handshake is read), then the tunnel: bytes copied both ways (or spliced),
// half-closes passed on, and the end once both ways are done. The request and response side
// of the state machine is in client_conn.cpp.
#include <cstring>

#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/rewrite.hpp"
#include "stickyd/ws_frame.hpp"

namespace stickyd {

void ClientConn::upstream_upgraded(const char* rest, size_t n) {
  if (!upstream_) return;
  if (!upgrade_requested_) {
    upstream_failed(UV_EPROTO, "101 without an upgrade request");
    return;
  }
  // The backend must switch to the protocol that was asked for (RFC 9110 7.8).
  std::string_view to = upstream_->head().get("upgrade");
  while (!to.empty() && (to.front() == ' ' || to.front() == '\t')) to.remove_prefix(1);
  while (!to.empty() && (to.back() == ' ' || to.back() == '\t')) to.remove_suffix(1);
  if (to.empty() || !has_token(upgrade_value_, to)) {
    upstream_failed(UV_EPROTO, "101 to a protocol that was not asked for");
    return;
  }
  status_ = 101;
  upstream_->begin_tunnel(this);
  if (route_.handshake) {
    // Websocket-first handshake. With `cookie: true` the backend names the sid in its 101;
    // otherwise (or to tag it) the sid is in the open packet, the first frame after the 101.
    // Hold the 101 until that frame arrives so the sid is learnt and the cookie still added.
    std::string_view from_cookie = session_cookie_in(upstream_->head());
    if (from_cookie.empty() || server_.router().persistence().proxy_tags()) {
      state_ = State::HoldingUpgrade;
      hold_raw_.assign(rest, n);
      set_deadline(server_.config().timeouts.server);
      finish_upgrade_hold(false);
      return;
    }
    learn_and_cookie(from_cookie, nullptr, nullptr);
    pin_learnt(from_cookie);
  }
  write_response_head(ResponseEdit{});
  if (state_ == State::Closing) return;
  start_tunnel(std::string_view(rest, n));
}

void ClientConn::finish_upgrade_hold(bool give_up) {
  size_t max = server_.config().limits.max_handshake_body;
  WsFrameScan scan = scan_first_ws_frame(hold_raw_, max);
  if (scan.status == WsFrameScan::NeedMore && hold_raw_.size() <= max && !give_up) return;
  std::optional<OpenPacket> open;
  if (scan.status == WsFrameScan::Text) open = parse_open_packet_ws(scan.payload);
  ResponseEdit edit;
  std::string out;  // what follows the 101
  if (open) {
    learn_and_cookie(session_cookie_in(upstream_->head()), &*open, &edit);
    pin_learnt(open->sid);
    if (!edit.tagged_sid.empty()) {
      if (auto p = replace_open_packet_sid(scan.payload, edit.backend_sid, edit.tagged_sid)) {
        size_t frame_end = static_cast<size_t>(scan.payload.data() - hold_raw_.data()) + scan.payload.size();
        out = server_text_frame(*p);
        out.append(hold_raw_, frame_end, std::string::npos);
      } else {
        edit.tagged_sid.clear();
      }
    }
  } else {
    log::warn("websocket handshake without a readable open packet",
              {{"backend", server_.router().backend(route_.backend).config.name}});
  }
  if (out.empty()) out.swap(hold_raw_);
  std::string().swap(hold_raw_);
  write_response_head(edit);
  if (state_ == State::Closing) return;
  start_tunnel(out);
}

void ClientConn::start_tunnel(std::string_view from_backend) {
  state_ = State::Tunnel;
  settle("tunnel", /*keep_pin=*/true);
  ++server_.router().backend(route_.backend).tunnels;
  server_.metrics().tunnel_opened(route_.backend);
  tunnel_counted_ = true;
  if (!route_.key.empty()) server_.tunnel_opened(this, route_.key);
  head_.release();
  upstream_->release_head();
  set_deadline(server_.config().timeouts.tunnel);
  // Tunnel bytes that came with the 101 or before it count like the ones that follow.
  if (!from_backend.empty()) server_.metrics().bytes_to_client(route_.backend, from_backend.size());
  if (!from_backend.empty() && !send(from_backend)) {
    abort("client write failed");
    return;
  }
  if (!pending_.empty()) {
    std::string early;
    early.swap(pending_);
    server_.metrics().bytes_to_backend(route_.backend, early.size());
    if (!upstream_->send(early)) {
      abort("backend write failed");
      return;
    }
  }
  std::string().swap(pending_);
  update_reading();
}

void ClientConn::upstream_tunnel_data(const char* data, size_t n) {
  if (state_ == State::HoldingUpgrade) {
    hold_raw_.append(data, n);
    finish_upgrade_hold(false);
    return;
  }
  set_deadline(server_.config().timeouts.tunnel);
  server_.metrics().bytes_to_client(route_.backend, n);
  if (!send(std::string_view(data, n))) {
    abort("client write failed");
    return;
  }
  if (write_backlogged() && upstream_) upstream_->stop_reading();
}

void ClientConn::upstream_tunnel_spliced(size_t n) {
  set_deadline(server_.config().timeouts.tunnel);
  server_.metrics().bytes_to_client(route_.backend, n);
}

void ClientConn::on_spliced(size_t n) {
  set_deadline(server_.config().timeouts.tunnel);
  server_.metrics().bytes_to_backend(route_.backend, n);
}

bool ClientConn::maybe_splice() {
  if (spliced()) return true;
  // Only a plain tunnel with nothing buffered either way (Socket::splice_join checks queued,
  // corked and TLS bytes) and both directions open; otherwise the copy path goes on, and
  // this is tried again when the queues drain.
  if (state_ != State::Tunnel || !upstream_ || !server_.config().tunnel_splice || client_eof_ ||
      upstream_eof_ || !pending_.empty())
    return false;
  return Socket::splice_join(*this, *upstream_);
}

void ClientConn::upstream_tunnel_eof() {
  upstream_eof_ = true;
  if (state_ == State::HoldingUpgrade) finish_upgrade_hold(true);  // pass on what came
  if (state_ != State::Tunnel && client_eof_) {
    abort(nullptr);
    return;
  }
  shutdown_write();  // propagate the half-close (after what is queued); the client may still send
  tunnel_finished();
}

bool ClientConn::tunnel_finished() {
  if (state_ != State::Tunnel || !client_eof_ || !upstream_eof_) return false;
  // Both ways ended: close once what each side still had queued has left (closing earlier
  // would drop it). Splice mode queues nothing: its EOFs come after the pipe is flushed.
  if (queued_bytes() || (upstream_ && upstream_->queued_bytes())) return false;
  abort(nullptr);
  return true;
}

// ---------------------------------------------------------------- local answers and ends

}  // namespace stickyd
