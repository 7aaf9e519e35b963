// TLS with OpenSSL 3 driven from the event loop: memory BIOs, no blocking call, no thread.
// A Session turns ciphertext read from a socket into plaintext and plaintext to send into
// ciphertext; the socket layer moves the bytes.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stickyd/config.hpp"

namespace stickyd::tls {

// Load-time checks, also used by the config loader so that `--check` reports a bad file at
// its `cert`/`key`/`ca` node. Messages name the file: "certificate file '/etc/a.pem': No such
// file or directory", "private key file '/etc/b.key': key does not match certificate
// '/etc/a.pem' (key values mismatch)", "certificate file '/etc/old.pem': certificate expired
// on 2020-01-02 00:00:00 UTC".
enum class FileRole { Cert, Key };
struct FileProblem {
  FileRole role;  // which of the two files is at fault
  std::string message;
};
// Readable, PEM, key matches the leaf (the first certificate), leaf valid now, no encrypted key.
std::optional<FileProblem> check_key_pair(const std::string& cert_file,
                                          const std::string& key_file);
// Readable PEM bundle with at least one certificate.
std::optional<std::string> check_ca_file(const std::string& ca_file);
// TLS 1.2 cipher list (OpenSSL syntax): an error when it selects no cipher at all.
std::optional<std::string> check_cipher_list(const std::string& ciphers);
// TLS 1.3 suites, ':'-separated: an error naming the first unknown one.
std::optional<std::string> check_ciphersuites(const std::string& suites);

// SSL_CTX for a listener: certificates chosen by SNI, ALPN http/1.1, TLS >= 1.2, secure
// ciphers, session tickets with keys rotated by rotate_ticket_keys().
// Lifetime: must outlive every Session made from it (its callbacks serve their handshakes);
// on reload, keep the old one until its connections are gone (e.g. a shared_ptr per
// connection).
class ServerContext {
 public:
  // nullptr and `error` ("cert.pem: no such file", "key does not match certificate",
  // "certificate expired on ...", with OpenSSL's reason) when the files are unusable.
  static std::unique_ptr<ServerContext> create(const TlsServerConfig& cfg, std::string& error);
  ~ServerContext();
  SSL_CTX* ctx() const { return ctx_; }  // the default certificate's context
  // Current key -> previous (still accepted, its tickets renewed), new random current key.
  // Call every cfg.ticket_key_rotation. No-op when session tickets are off.
  void rotate_ticket_keys();

 private:
  ServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// SSL_CTX for connections to one backend: trust store, verification, optional client cert.
// Sessions keep what they need (OpenSSL reference counts): it may go before them.
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

// One per connection. After every call that may produce bytes (feed, write, start, shutdown)
// send what take_output() gives, even when feed() returned no plaintext or false (alerts).
// nullptr from the factories only when OpenSSL cannot allocate.
class Session {
 public:
  static std::unique_ptr<Session> server(const ServerContext& ctx);
  // `host`: name to send as SNI and verify (may be an IP literal, verified as such). A
  // non-empty cfg.sni replaces it. An IP is never sent as SNI; with cfg.verify the
  // certificate must carry it as an IP SAN.
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
  // close_notify (then take_output), once; nothing before the handshake is done. A write()
  // after it is fatal ("protocol is shutdown").
  void shutdown();

  bool handshake_done() const { return done_; }
  bool peer_closed() const { return peer_closed_; }  // close_notify received
  // OpenSSL's reason, e.g. "http request" (plain HTTP on the TLS port), "wrong version
  // number", "unsupported protocol" (TLS 1.0/1.1 client), "tlsv1 alert protocol version",
  // "certificate verify failed: hostname mismatch". Empty while all is well.
  const std::string& error() const { return error_; }
  std::string sni() const;
  std::string version() const;  // "TLSv1.3"
  std::string alpn() const;
  // For what this class does not wrap (peer certificate, SSL_session_reused, SSL_set_session
  // before start(), ...). Do not replace its BIOs.
  SSL* native_handle() const { return ssl_; }

 private:
  explicit Session(SSL* ssl);
  bool pump(std::string* plain);
  bool fail(int ssl_error);
  SSL* ssl_;
  BIO* in_;   // network -> SSL
  BIO* out_;  // SSL -> network
  std::string pending_;  // plaintext written before the handshake finished
  std::string error_;
  bool done_ = false;
  bool peer_closed_ = false;
};

}  // namespace stickyd::tls
