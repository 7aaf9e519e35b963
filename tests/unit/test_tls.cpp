// TLS sessions driven entirely in memory: a client Session and a server Session exchange the
// bytes take_output() gives them, no socket involved. Certificates are made once per run with
// the openssl command line.

#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "stickyd/tls.hpp"

using namespace stickyd;
using namespace stickyd::tls;

namespace stickyd_test {

// Test PKI in a temporary directory (removed at exit):
//   ca.pem/ca.key       test CA;  ca2.pem  another CA that signed nothing used here
//   a.pem/a.key         CN=a.test, SAN DNS:a.test IP:127.0.0.1, signed by ca
//   b.pem/b.key         CN=b.test, SAN DNS:b.test DNS:*.b.test, signed by ca
//   c.pem/c.key         CN=c.test, no SAN, self-signed
//   client.pem/.key     CN=client.test, signed by ca
//   expired.pem         key a.key, valid 2020-01-01..2020-01-02;  future.pem: 2099
//   other.key           matches nothing;  enc.key: a.key encrypted;  junk.txt: not PEM
class TlsFiles {
 public:
  TlsFiles() {
    char tmpl[] = "/tmp/stickyd_tls_test_XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (d == nullptr) return;
    dir_ = d;
    const std::string script = dir_ + "/gen.sh";
    std::ofstream(script) << R"SH(set -e
cd "$1"
EC="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $EC -keyout ca.key -out ca.pem -days 3650 -subj "/CN=stickyd test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -x509 $EC -keyout ca2.key -out ca2.pem -days 3650 -subj "/CN=other test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
leaf() {
  openssl req -new $EC -keyout $1.key -out $1.csr -subj "$2"
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -set_serial $4 -days 30 \
    -extfile $1.ext -out $1.pem
}
leaf a "/CN=a.test" "DNS:a.test,IP:127.0.0.1" 11
leaf b "/CN=b.test" "DNS:b.test,DNS:*.b.test" 12
leaf client "/CN=client.test" "DNS:client.test" 13
openssl req -x509 $EC -keyout c.key -out c.pem -days 30 -subj "/CN=c.test"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key
openssl pkey -in a.key -aes256 -passout pass:secret -out enc.key
echo "not a PEM file" > junk.txt
mkdir db && : > db/index.txt && echo 20 > db/serial
cat > ca.cnf <<'X'
[ca]
default_ca = d
[d]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = p
unique_subject = no
x509_extensions = e
[p]
commonName = supplied
[e]
basicConstraints = CA:FALSE
subjectAltName = DNS:expired.test
X
openssl req -new -key a.key -out exp.csr -subj "/CN=expired.test"
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in exp.csr -out expired.pem \
  -notext -startdate 20200101000000Z -enddate 20200102000000Z
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in exp.csr -out future.pem \
  -notext -startdate 20990101000000Z -enddate 20990102000000Z
)SH";
    const std::string cmd = "sh '" + script + "' '" + dir_ + "' >'" + dir_ + "/gen.log' 2>&1";
    ok_ = std::system(cmd.c_str()) == 0;
    if (!ok_) {
      std::ifstream in(dir_ + "/gen.log");
      std::stringstream ss;
      ss << in.rdbuf();
      log_ = ss.str();
    }
  }
  ~TlsFiles() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const { return ok_; }
  const std::string& log() const { return log_; }
  const std::string& dir() const { return dir_; }
  std::string operator()(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  bool ok_ = false;
  std::string log_;
};

// Shared with test_config.cpp.
const TlsFiles& tls_files() {
  static const TlsFiles files;
  return files;
}
// "" when the certificates could not be made.
std::string tls_test_dir() { return tls_files().ok() ? tls_files().dir() : std::string(); }

}  // namespace stickyd_test

namespace {

using stickyd_test::tls_files;

const stickyd_test::TlsFiles& files() {
  const auto& f = tls_files();
  INFO(f.log());
  REQUIRE(f.ok());
  return f;
}

TlsServerConfig server_config(std::initializer_list<const char*> names) {
  TlsServerConfig cfg;
  for (const char* n : names) {
    cfg.certificates.push_back(
        TlsCertificate{files()(std::string(n) + ".pem"), files()(std::string(n) + ".key"), 1, 1});
  }
  return cfg;
}

std::unique_ptr<ServerContext> make_server(const TlsServerConfig& cfg) {
  std::string err;
  auto ctx = ServerContext::create(cfg, err);
  INFO(err);
  REQUIRE(ctx);
  CHECK(err.empty());
  return ctx;
}

std::unique_ptr<ServerContext> make_server(std::initializer_list<const char*> names) {
  return make_server(server_config(names));
}

// Trusts the test CA, verifies, no SNI override.
TlsClientConfig client_config(const std::string& ca = "ca.pem", bool verify = true) {
  TlsClientConfig cfg;
  cfg.enabled = true;
  cfg.ca_file = files()(ca);
  cfg.verify = verify;
  return cfg;
}

std::unique_ptr<ClientContext> make_client(const TlsClientConfig& cfg) {
  std::string err;
  auto ctx = ClientContext::create(cfg, err);
  INFO(err);
  REQUIRE(ctx);
  return ctx;
}

std::string server_error(const TlsServerConfig& cfg) {
  std::string err;
  auto ctx = ServerContext::create(cfg, err);
  CHECK_FALSE(ctx);
  return err;
}

std::string client_error(const TlsClientConfig& cfg) {
  std::string err;
  auto ctx = ClientContext::create(cfg, err);
  CHECK_FALSE(ctx);
  return err;
}

bool contains(const std::string& s, const std::string& frag) {
  return s.find(frag) != std::string::npos;
}

// One client and one server Session wired back to back.
struct Link {
  std::unique_ptr<Session> client;
  std::unique_ptr<Session> server;
  std::string client_got;  // plaintext the client received
  std::string server_got;
  bool client_ok = true;
  bool server_ok = true;
  size_t records = 0;  // feed() calls made

  Link(const ServerContext& s, const ClientContext& c, const std::string& host,
       SSL_SESSION* resume = nullptr)
      : client(Session::client(c, host)), server(Session::server(s)) {
    REQUIRE(client);
    REQUIRE(server);
    if (resume != nullptr) REQUIRE(SSL_set_session(client->native_handle(), resume) == 1);
  }

  // Moves bytes both ways until nothing moves. `piece`: feed in slices of that size.
  void pump(size_t piece = 0) {
    for (int round = 0; round < 100; ++round) {
      std::string to_server, to_client;
      client->take_output(to_server);
      if (!to_server.empty() && server_ok) server_ok = feed(*server, to_server, server_got, piece);
      server->take_output(to_client);
      if (!to_client.empty() && client_ok) client_ok = feed(*client, to_client, client_got, piece);
      if (to_server.empty() && to_client.empty()) return;
    }
    FAIL("the sessions never stopped talking");
  }

  bool feed(Session& s, const std::string& wire, std::string& got, size_t piece) {
    if (piece == 0) piece = wire.size();
    for (size_t i = 0; i < wire.size(); i += piece) {
      ++records;
      if (!s.feed(wire.data() + i, std::min(piece, wire.size() - i), got)) return false;
    }
    return true;
  }

  void connect(size_t piece = 0) {
    client->start();
    pump(piece);
  }

  bool both_ready() const {
    return client_ok && server_ok && client->handshake_done() && server->handshake_done();
  }

  std::string peer_subject() const {
    X509* cert = SSL_get0_peer_certificate(client->native_handle());
    if (cert == nullptr) return "";
    char buf[256];
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    return buf;
  }

  bool reused() const { return SSL_session_reused(client->native_handle()) == 1; }
};

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i % 251));
  return s;
}

// A session the client can resume: a full handshake, then the NewSessionTicket read.
SSL_SESSION* first_session(const ServerContext& s, const ClientContext& c,
                           const std::string& host = "a.test") {
  Link link(s, c, host);
  link.connect();
  REQUIRE(link.both_ready());
  CHECK_FALSE(link.reused());
  SSL_SESSION* sess = SSL_get1_session(link.client->native_handle());
  REQUIRE(sess != nullptr);
  REQUIRE(SSL_SESSION_is_resumable(sess) == 1);
  return sess;
}

struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

std::string ticket_of(SSL_SESSION* s) {
  const unsigned char* t = nullptr;
  size_t len = 0;
  SSL_SESSION_get0_ticket(s, &t, &len);
  return std::string(reinterpret_cast<const char*>(t), len);
}

}  // namespace

TEST_SUITE("tls") {
  TEST_CASE("handshake, ALPN and data both ways (TLS 1.3)") {
    auto server_ctx = make_server({"a"});
    auto client_ctx = make_client(client_config());
    Link link(*server_ctx, *client_ctx, "a.test");
    CHECK_FALSE(link.client->handshake_done());
    // Written before the handshake: held until it completes, on both sides.
    CHECK(link.client->write("GET / HTTP/1.1\r\n\r\n"));
    CHECK(link.server->write("early from server;"));
    link.connect();
    INFO(link.client->error() << " / " << link.server->error());
    REQUIRE(link.both_ready());
    CHECK(link.client->version() == "TLSv1.3");
    CHECK(link.server->version() == "TLSv1.3");
    CHECK(link.client->alpn() == "http/1.1");
    CHECK(link.server->alpn() == "http/1.1");
    CHECK(link.server->sni() == "a.test");
    CHECK(link.peer_subject() == "/CN=a.test");
    CHECK(link.server_got == "GET / HTTP/1.1\r\n\r\n");
    CHECK(link.client_got == "early from server;");

    // Several records each way (a TLS record carries at most 16 KiB).
    const std::string up = pattern(100000, 'a');
    const std::string down = pattern(250000, 'z');
    link.client_got.clear();
    link.server_got.clear();
    CHECK(link.client->write(up.substr(0, 1)));
    CHECK(link.client->write(up.substr(1)));
    CHECK(link.server->write(down));
    link.pump();
    CHECK(link.server_got == up);
    CHECK(link.client_got == down);
    CHECK_FALSE(link.client->peer_closed());
    CHECK(link.client->error().empty());
    CHECK(link.server->error().empty());
  }

  TEST_CASE("bytes fed one at a time still make a handshake") {
    auto server_ctx = make_server({"a"});
    auto client_ctx = make_client(client_config());
    Link link(*server_ctx, *client_ctx, "a.test");
    CHECK(link.client->write("ping"));
    link.connect(1);
    REQUIRE(link.both_ready());
    CHECK(link.server_got == "ping");
    CHECK(link.server->write("pong"));
    link.pump(1);
    CHECK(link.client_got == "pong");
    CHECK(link.records > 500);
  }

  TEST_CASE("TLS 1.2 handshake with the default cipher list") {
    auto server_ctx = make_server({"a"});
    auto client_ctx = make_client(client_config());
    SSL_CTX_set_max_proto_version(client_ctx->ctx(), TLS1_2_VERSION);
    Link link(*server_ctx, *client_ctx, "a.test");
    CHECK(link.client->write("hello"));
    link.connect();
    INFO(link.client->error() << " / " << link.server->error());
    REQUIRE(link.both_ready());
    CHECK(link.server->version() == "TLSv1.2");
    CHECK(link.server->alpn() == "http/1.1");
    const std::string cipher = SSL_get_cipher_name(link.server->native_handle());
    CHECK(contains(cipher, "ECDHE"));
    CHECK(contains(cipher, "GCM"));
    CHECK(link.server_got == "hello");
  }

  TEST_CASE("SNI picks the certificate; unknown or no name gets the default") {
    auto server_ctx = make_server({"a", "b", "c"});
    auto client_ctx = make_client(client_config("ca.pem", false));
    struct Case {
      const char* host;
      const char* subject;
    };
    const Case cases[] = {
        {"a.test", "/CN=a.test"},        // the default's own name
        {"b.test", "/CN=b.test"},        // exact SAN
        {"B.Test", "/CN=b.test"},        // case-insensitive
        {"x.b.test", "/CN=b.test"},      // *.b.test
        {"y.x.b.test", "/CN=a.test"},    // a wildcard covers one label only
        {"c.test", "/CN=c.test"},        // no SAN: CN
        {"unknown.test", "/CN=a.test"},  // default
        {"127.0.0.1", "/CN=a.test"},     // IP: no SNI sent
    };
    for (const Case& c : cases) {
      CAPTURE(c.host);
      Link link(*server_ctx, *client_ctx, c.host);
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(link.peer_subject() == c.subject);
      CHECK(link.server->alpn() == "http/1.1");
    }
    // Verified end to end through the chosen certificate.
    auto verifying = make_client(client_config());
    Link link(*server_ctx, *verifying, "b.test");
    link.connect();
    INFO(link.client->error());
    REQUIRE(link.both_ready());
    CHECK(link.server->sni() == "b.test");
    CHECK(link.peer_subject() == "/CN=b.test");
    Link none(*server_ctx, *verifying, "127.0.0.1");
    none.connect();
    REQUIRE(none.both_ready());
    CHECK(none.server->sni() == "");
  }

  TEST_CASE("ALPN: http/1.1 chosen from a list, absent or h2-only offers still connect") {
    auto server_ctx = make_server({"a"});
    auto client_ctx = make_client(client_config());
    const unsigned char both[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    const unsigned char h2[] = {2, 'h', '2'};
    REQUIRE(SSL_CTX_set_alpn_protos(client_ctx->ctx(), both, sizeof both) == 0);
    {
      Link link(*server_ctx, *client_ctx, "a.test");
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(link.client->alpn() == "http/1.1");
    }
    REQUIRE(SSL_CTX_set_alpn_protos(client_ctx->ctx(), h2, sizeof h2) == 0);
    {
      Link link(*server_ctx, *client_ctx, "a.test");
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(link.client->alpn() == "");
    }
    REQUIRE(SSL_CTX_set_alpn_protos(client_ctx->ctx(), nullptr, 0) == 0);
    {
      Link link(*server_ctx, *client_ctx, "a.test");
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(link.server->alpn() == "");
    }
  }

  TEST_CASE("min_version 1.3 refuses a TLS 1.2 client") {
    TlsServerConfig cfg = server_config({"a"});
    cfg.min_version = "1.3";
    auto server_ctx = make_server(cfg);
    auto client_ctx = make_client(client_config());
    SSL_CTX_set_max_proto_version(client_ctx->ctx(), TLS1_2_VERSION);
    Link link(*server_ctx, *client_ctx, "a.test");
    link.connect();
    CHECK_FALSE(link.server_ok);
    CHECK_FALSE(link.client_ok);
    CHECK(link.server->error() == "unsupported protocol");
    CHECK(contains(link.client->error(), "protocol version"));  // the server's alert
    CHECK_FALSE(link.server->handshake_done());
    // The session stays failed.
    std::string plain;
    CHECK_FALSE(link.server->feed("x", 1, plain));
    CHECK_FALSE(link.server->write("x"));

    // A TLS 1.3 client is fine.
    SSL_CTX_set_max_proto_version(client_ctx->ctx(), 0);
    Link ok(*server_ctx, *client_ctx, "a.test");
    ok.connect();
    REQUIRE(ok.both_ready());
    CHECK(ok.server->version() == "TLSv1.3");
  }

  TEST_CASE("TLS 1.0-only and 1.1-only clients are refused") {
    auto server_ctx = make_server({"a"});
    for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
      CAPTURE(version);
      auto client_ctx = make_client(client_config("ca.pem", false));
      SSL_CTX* c = client_ctx->ctx();
      SSL_CTX_set_security_level(c, 0);  // else OpenSSL 3 will not even offer TLS < 1.2
      REQUIRE(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0") == 1);
      REQUIRE(SSL_CTX_set_min_proto_version(c, version) == 1);
      REQUIRE(SSL_CTX_set_max_proto_version(c, version) == 1);
      Link link(*server_ctx, *client_ctx, "a.test");
      link.client->start();
      std::string hello;
      link.client->take_output(hello);
      REQUIRE(hello.size() > 5);
      CHECK(hello[0] == 0x16);  // a ClientHello did go out
      std::string plain;
      CHECK_FALSE(link.server->feed(hello.data(), hello.size(), plain));
      CHECK(link.server->error() == "unsupported protocol");
      std::string alert;
      link.server->take_output(alert);
      CHECK(alert.size() == 7);  // the protocol_version alert for the client
      CHECK(alert[0] == 0x15);
      CHECK_FALSE(link.client->feed(alert.data(), alert.size(), plain));
      CHECK(link.client->error() == "tlsv1 alert protocol version");
    }
  }

  TEST_CASE("plain HTTP or garbage on a TLS port is a clear fatal error") {
    auto server_ctx = make_server({"a"});
    {
      auto s = Session::server(*server_ctx);
      REQUIRE(s);
      std::string plain;
      const std::string req = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
      CHECK_FALSE(s->feed(req.data(), req.size(), plain));
      CHECK(plain.empty());
      CHECK(s->error() == "http request");
      CHECK_FALSE(s->handshake_done());
    }
    {
      auto s = Session::server(*server_ctx);
      std::string plain;
      const std::string junk = "\x16\x09\x09hello world, this is not TLS at all\r\n";
      CHECK_FALSE(s->feed(junk.data(), junk.size(), plain));
      CHECK(s->error() == "wrong version number");
    }
    {
      // An incomplete record is not an error: more is needed.
      auto s = Session::server(*server_ctx);
      std::string plain;
      CHECK(s->feed("\x16\x03\x01", 3, plain));
      CHECK(s->error().empty());
    }
  }

  TEST_CASE("a corrupted record after the handshake is fatal") {
    auto server_ctx = make_server({"a"});
    auto client_ctx = make_client(client_config());
    Link link(*server_ctx, *client_ctx, "a.test");
    link.connect();
    REQUIRE(link.both_ready());
    CHECK(link.client->write("sensitive"));
    std::string wire;
    link.client->take_output(wire);
    REQUIRE(wire.size() > 10);
    wire[wire.size() - 3] ^= 0x40;
    std::string plain;
    CHECK_FALSE(link.server->feed(wire.data(), wire.size(), plain));
    CHECK(plain.empty());
    CHECK(contains(link.server->error(), "bad record mac"));
  }

  TEST_CASE("client verification: CA, host name, IP address, sni override") {
    auto server_ctx = make_server({"a"});
    {
      auto wrong_ca = make_client(client_config("ca2.pem"));
      Link link(*server_ctx, *wrong_ca, "a.test");
      link.connect();
      CHECK_FALSE(link.client_ok);
      CHECK(link.client->error() ==
            "certificate verify failed: unable to get local issuer certificate");
      CHECK_FALSE(link.server_ok);  // the client's alert
      CHECK(contains(link.server->error(), "unknown ca"));
    }
    auto right_ca = make_client(client_config());
    {
      Link link(*server_ctx, *right_ca, "a.test");
      link.connect();
      CHECK(link.both_ready());
    }
    {
      Link link(*server_ctx, *right_ca, "b.test");  // the server only has a.test
      link.connect();
      CHECK_FALSE(link.client_ok);
      CHECK(link.client->error() == "certificate verify failed: hostname mismatch");
    }
    {
      Link link(*server_ctx, *right_ca, "127.0.0.1");  // SAN IP:127.0.0.1
      link.connect();
      CHECK(link.both_ready());
    }
    {
      Link link(*server_ctx, *right_ca, "[127.0.0.2]");
      link.connect();
      CHECK_FALSE(link.client_ok);
      CHECK(link.client->error() == "certificate verify failed: IP address mismatch");
    }
    {
      TlsClientConfig cfg = client_config();
      cfg.sni = "a.test";  // connect by address, verify and send the name
      auto by_name = make_client(cfg);
      Link link(*server_ctx, *by_name, "10.9.8.7");
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(link.server->sni() == "a.test");
    }
    {
      auto no_verify = make_client(client_config("ca2.pem", false));
      Link link(*server_ctx, *no_verify, "wrong.test");
      link.connect();
      CHECK(link.both_ready());
    }
    {
      // System trust store: the test CA is not in it.
      TlsClientConfig cfg;
      cfg.enabled = true;
      auto system = make_client(cfg);
      Link link(*server_ctx, *system, "a.test");
      link.connect();
      CHECK_FALSE(link.client_ok);
      CHECK(contains(link.client->error(), "certificate verify failed"));
    }
  }

  TEST_CASE("client certificate is presented") {
    auto server_ctx = make_server({"a"});
    TlsClientConfig cfg = client_config();
    cfg.cert_file = files()("client.pem");
    cfg.key_file = files()("client.key");
    auto client_ctx = make_client(cfg);
    Link link(*server_ctx, *client_ctx, "a.test");
    // Ask for it (the listener config has no client CA; the test sets one up by hand).
    SSL_set_verify(link.server->native_handle(), SSL_VERIFY_PEER,
                   [](int, X509_STORE_CTX*) { return 1; });
    link.connect();
    REQUIRE(link.both_ready());
    X509* peer = SSL_get0_peer_certificate(link.server->native_handle());
    REQUIRE(peer != nullptr);
    char buf[256];
    X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
    CHECK(std::string(buf) == "/CN=client.test");
  }

  TEST_CASE("session tickets: resumption, one rotation renews, two rotations expire") {
    auto server_ctx = make_server({"a", "b"});
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
      CAPTURE(version);
      auto client_ctx = make_client(client_config());
      SSL_CTX_set_max_proto_version(client_ctx->ctx(), version);
      SessionPtr first(first_session(*server_ctx, *client_ctx));
      CHECK(SSL_SESSION_has_ticket(first.get()) == 1);
      {
        Link link(*server_ctx, *client_ctx, "a.test", first.get());
        CHECK(link.client->write("again"));
        link.connect();
        REQUIRE(link.both_ready());
        CHECK(link.reused());
        CHECK(link.server_got == "again");
        if (version == TLS1_2_VERSION) {
          // Current key: the ticket is kept, no new one issued.
          SessionPtr now(SSL_get1_session(link.client->native_handle()));
          CHECK(ticket_of(now.get()) == ticket_of(first.get()));
        }
      }
      server_ctx->rotate_ticket_keys();
      SessionPtr renewed;
      {
        Link link(*server_ctx, *client_ctx, "a.test", first.get());
        link.connect();
        REQUIRE(link.both_ready());
        CHECK(link.reused());  // previous key still accepted...
        renewed.reset(SSL_get1_session(link.client->native_handle()));
        CHECK(ticket_of(renewed.get()) != ticket_of(first.get()));  // ...and a new ticket issued
      }
      server_ctx->rotate_ticket_keys();
      {
        Link link(*server_ctx, *client_ctx, "a.test", first.get());
        link.connect();
        REQUIRE(link.both_ready());
        CHECK_FALSE(link.reused());  // key gone: full handshake, still a success
      }
      {
        // The renewed ticket (made with the key that is now "previous") still works.
        Link link(*server_ctx, *client_ctx, "a.test", renewed.get());
        link.connect();
        REQUIRE(link.both_ready());
        CHECK(link.reused());
      }
    }
  }

  TEST_CASE("session tickets work through an SNI certificate, not on another listener") {
    auto server_ctx = make_server({"a", "b"});
    auto client_ctx = make_client(client_config());
    SessionPtr first(first_session(*server_ctx, *client_ctx, "b.test"));
    {
      Link link(*server_ctx, *client_ctx, "b.test", first.get());
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(link.reused());
      CHECK(link.peer_subject() == "/CN=b.test");
    }
    auto other_listener = make_server({"a", "b"});  // its own ticket keys
    Link link(*other_listener, *client_ctx, "b.test", first.get());
    link.connect();
    REQUIRE(link.both_ready());
    CHECK_FALSE(link.reused());
  }

  TEST_CASE("session_tickets: false issues no ticket; TLS 1.2 resumes by session id") {
    TlsServerConfig cfg = server_config({"a"});
    cfg.session_tickets = false;
    auto server_ctx = make_server(cfg);
    CHECK((SSL_CTX_get_options(server_ctx->ctx()) & SSL_OP_NO_TICKET) != 0);
    server_ctx->rotate_ticket_keys();  // no-op
    auto client_ctx = make_client(client_config());
    SSL_CTX_set_max_proto_version(client_ctx->ctx(), TLS1_2_VERSION);
    SessionPtr first(first_session(*server_ctx, *client_ctx));
    CHECK(SSL_SESSION_has_ticket(first.get()) == 0);
    Link link(*server_ctx, *client_ctx, "a.test", first.get());
    link.connect();
    REQUIRE(link.both_ready());
    CHECK(link.reused());
  }

  TEST_CASE("close_notify: shutdown() on one side, peer_closed() on the other") {
    auto server_ctx = make_server({"a"});
    auto client_ctx = make_client(client_config());
    Link link(*server_ctx, *client_ctx, "a.test");
    link.connect();
    REQUIRE(link.both_ready());
    CHECK(link.client->write("last words"));
    link.client->shutdown();
    link.client->shutdown();  // once only
    std::string wire;
    link.client->take_output(wire);
    std::string plain;
    CHECK(link.server->feed(wire.data(), wire.size(), plain));
    CHECK(plain == "last words");
    CHECK(link.server->peer_closed());
    CHECK(link.server->error().empty());
    // The server may still send, then answers with its own close_notify.
    CHECK(link.server->write("bye"));
    link.server->shutdown();
    link.pump();
    CHECK(link.client_got == "bye");
    CHECK(link.client->peer_closed());
    CHECK(link.client->error().empty());
    // Nothing may follow our own close_notify: a fatal error.
    CHECK_FALSE(link.client->write("more"));
    CHECK(link.client->error() == "protocol is shutdown");
    // Before the handshake, shutdown() sends nothing.
    auto fresh = Session::server(*server_ctx);
    fresh->shutdown();
    std::string none;
    fresh->take_output(none);
    CHECK(none.empty());
  }

  TEST_CASE("ServerContext::create reports unusable files and settings") {
    const auto& f = files();
    auto pair = [](const std::string& cert, const std::string& key) {
      TlsServerConfig cfg;
      cfg.certificates.push_back(TlsCertificate{files()(cert), files()(key), 1, 1});
      return cfg;
    };
    CHECK(server_error(pair("missing.pem", "a.key")) ==
          "certificate file '" + f("missing.pem") + "': No such file or directory");
    CHECK(server_error(pair("a.pem", "missing.key")) ==
          "private key file '" + f("missing.key") + "': No such file or directory");
    CHECK(server_error(pair("junk.txt", "a.key")) ==
          "certificate file '" + f("junk.txt") + "': no PEM certificate found (no start line)");
    CHECK(server_error(pair("a.key", "a.key")) ==
          "certificate file '" + f("a.key") + "': no PEM certificate found (no start line)");
    CHECK(server_error(pair("a.pem", "a.pem")) ==
          "private key file '" + f("a.pem") + "': no PEM private key found");
    CHECK(server_error(pair("a.pem", "other.key")) == "private key file '" + f("other.key") +
                                                          "': key does not match certificate '" +
                                                          f("a.pem") + "' (key values mismatch)");
    CHECK(server_error(pair("a.pem", "enc.key")) ==
          "private key file '" + f("enc.key") +
              "': encrypted private keys are not supported (no pass phrase can be given)");
    CHECK(server_error(pair("expired.pem", "a.key")) ==
          "certificate file '" + f("expired.pem") +
              "': certificate expired on 2020-01-02 00:00:00 UTC");
    CHECK(server_error(pair("future.pem", "a.key")) ==
          "certificate file '" + f("future.pem") +
              "': certificate is not valid before 2099-01-01 00:00:00 UTC");
    CHECK(contains(server_error(pair(".", "a.key")), "is a directory"));
    // The second certificate is checked as well as the first.
    TlsServerConfig two = server_config({"a"});
    two.certificates.push_back(TlsCertificate{f("b.pem"), f("a.key"), 2, 5});
    CHECK(contains(server_error(two), "key does not match certificate '" + f("b.pem")));

    TlsServerConfig cfg = server_config({"a"});
    cfg.ciphers = "NOPE:NADA";
    CHECK(server_error(cfg) == "no valid cipher in ciphers 'NOPE:NADA' (no cipher match)");
    cfg = server_config({"a"});
    cfg.ciphersuites = "TLS_NOPE";
    CHECK(contains(server_error(cfg), "no valid ciphersuite"));
    cfg = server_config({"a"});
    cfg.min_version = "1.1";
    CHECK(contains(server_error(cfg), "unsupported min_version '1.1'"));
    CHECK(server_error(TlsServerConfig{}) == "no certificate configured");

    // Chosen ciphers are applied.
    cfg = server_config({"a"});
    cfg.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305";
    cfg.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
    auto server_ctx = make_server(cfg);
    auto client_ctx = make_client(client_config());
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
      SSL_CTX_set_max_proto_version(client_ctx->ctx(), version);
      Link link(*server_ctx, *client_ctx, "a.test");
      link.connect();
      REQUIRE(link.both_ready());
      CHECK(contains(SSL_get_cipher_name(link.server->native_handle()), "CHACHA20"));
    }
  }

  TEST_CASE("ClientContext::create reports unusable files") {
    const auto& f = files();
    TlsClientConfig cfg = client_config("missing.pem");
    CHECK(client_error(cfg) == "CA file '" + f("missing.pem") + "': No such file or directory");
    cfg = client_config("junk.txt");
    CHECK(client_error(cfg) == "CA file '" + f("junk.txt") + "': no PEM certificate found");
    cfg = client_config();
    cfg.cert_file = f("client.pem");
    cfg.key_file = f("other.key");
    CHECK(contains(client_error(cfg), "key does not match certificate"));
    cfg.key_file.clear();
    CHECK(client_error(cfg) == "a client certificate needs both cert and key");
    cfg = client_config();
    cfg.cert_file = f("expired.pem");
    cfg.key_file = f("a.key");
    CHECK(contains(client_error(cfg), "certificate expired on 2020-01-02"));
  }

  TEST_CASE("standalone checks used by the config loader") {
    const auto& f = files();
    CHECK_FALSE(check_key_pair(f("a.pem"), f("a.key")));
    auto p = check_key_pair(f("a.pem"), f("other.key"));
    REQUIRE(p);
    CHECK(p->role == FileRole::Key);
    p = check_key_pair(f("expired.pem"), f("a.key"));
    REQUIRE(p);
    CHECK(p->role == FileRole::Cert);
    CHECK_FALSE(check_ca_file(f("ca.pem")));
    CHECK(check_ca_file(f("a.key")));
    CHECK_FALSE(check_cipher_list("ECDHE+AESGCM:BOGUS"));  // one valid is enough
    CHECK(check_cipher_list("BOGUS") == "no valid cipher in 'BOGUS' (no cipher match)");
    CHECK_FALSE(check_ciphersuites("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"));
    auto why = check_ciphersuites("TLS_AES_128_GCM_SHA256:TLS_AES_512");
    REQUIRE(why);
    CHECK(contains(*why, "unknown TLS 1.3 ciphersuite 'TLS_AES_512'"));
    CHECK(check_ciphersuites("TLS_AES_128_GCM_SHA256:"));
    // Nothing left behind in OpenSSL's error queue for the next caller.
    CHECK(ERR_peek_error() == 0);
  }
}
