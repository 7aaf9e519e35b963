// TLS with OpenSSL 3 driven from the event loop: memory BIOs, no blocking call, no thread.
// A Session turns ciphertext read from a socket into plaintext and plaintext to send into
// ciphertext; the socket layer moves the bytes.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "stickyd/config.hpp"

namespace stickyd::tls {

// SSL_CTX for a listener: certificates chosen by SNI, ALPN http/1.1, TLS >= 1.2, secure
// ciphers, session tickets with keys rotated by rotate_ticket_keys().
class ServerContext {
 public:
  // nullptr and `error` ("cert.pem: no such file", "key does not match certificate",
  // "certificate expired on ...", with OpenSSL's reason) when the files are unusable.
  static std::unique_ptr<ServerContext> create(const TlsServerConfig& cfg, std::string& error);
  ~ServerContext();
  SSL_CTX* ctx() const { return ctx_; }
  void rotate_ticket_keys();

 private:
  ServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// SSL_CTX for connections to one backend: trust store, verification, optional client cert.
class ClientContext {
 public:
  static std::unique_ptr<ClientContext> create(const TlsClientConfig& cfg, std::string& error);
  ~ClientContext();
  SSL_CTX* ctx() const { return ctx_; }
  const TlsClientConfig& config() const { return cfg_; }

 private:
  ClientContext() = default;
  SSL_CTX* ctx_ = nullptr;
  TlsClientConfig cfg_;
};

class Session {
 public:
  static std::unique_ptr<Session> server(const ServerContext& ctx);
  // `host`: name to send as SNI and verify (may be an IP literal, verified as such).
  static std::unique_ptr<Session> client(const ClientContext& ctx, const std::string& host);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Bytes read from the socket. Decrypted application data is appended to `plain`; bytes to
  // send back (handshake records, alerts) can be collected with take_output(). false = fatal
  // (error() says why); the connection must be closed after sending take_output().
  bool feed(const char* data, size_t len, std::string& plain);
  // Encrypts application data (buffered inside until the handshake is done). false = fatal.
  bool write(std::string_view plain);
  // Ciphertext waiting to go out; appended to `wire`.
  void take_output(std::string& wire);
  // Client side: produce the ClientHello (then take_output).
  void start();
  // close_notify (then take_output).
  void shutdown();

  bool handshake_done() const { return done_; }
  bool peer_closed() const { return peer_closed_; }  // close_notify received
  const std::string& error() const { return error_; }
  std::string sni() const;
  std::string version() const;  // "TLSv1.3"
  std::string alpn() const;

 private:
  explicit Session(SSL* ssl);
  bool pump(std::string* plain);
  SSL* ssl_;
  BIO* in_;   // network -> SSL
  BIO* out_;  // SSL -> network
  std::string pending_;  // plaintext written before the handshake finished
  std::string error_;
  bool done_ = false;
  bool peer_closed_ = false;
};

}  // namespace stickyd::tls
