// TLS on memory BIOs: see include/stickyd/tls.hpp for the contract.
//
// Nothing here blocks: the SSL objects only ever talk to memory BIOs, files are read only
// while a context is created (startup, reload, `--check`), and encrypted private keys are
// refused instead of prompting for a pass phrase.

#include "stickyd/tls.hpp"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace stickyd::tls {

namespace {

constexpr const char* kDefaultCiphers = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!RC4:!3DES";
// ALPN wire format: length-prefixed protocol names.
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char kSessionIdContext[] = {'s', 't', 'i', 'c', 'k', 'y', 'd'};
constexpr size_t kMaxPemFile = 4 * 1024 * 1024;
constexpr long kMaxTicketLifetime = 7 * 24 * 3600;  // RFC 8446 §4.6.1

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The reason of the first error in OpenSSL's queue ("wrong version number"), or "" when the
// queue is empty. Empties the queue.
std::string take_openssl_reason() {
  std::string first;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    if (!first.empty()) continue;
    if (const char* r = ERR_reason_error_string(e)) {
      first = r;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      first = buf;
    }
  }
  return first;
}

std::string with_reason(std::string message) {
  const std::string reason = take_openssl_reason();
  if (!reason.empty()) message += " (" + reason + ")";
  return message;
}

// Whole file into `data`; false with a strerror()-style message in `error`.
bool read_file(const std::string& path, std::string& data, std::string& error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    error = std::strerror(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    error = "is a directory";
    return false;
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = std::strerror(errno);
    return false;
  }
  data.clear();
  char buf[8192];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > kMaxPemFile) {
      std::fclose(f);
      error = "file too large for a PEM file";
      return false;
    }
  }
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    error = std::strerror(err);
    return false;
  }
  return true;
}

std::string asn1_time_text(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "an unreadable date";
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// Pass-phrase callback that refuses: the default one would read from the terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct CtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using CtxPtr = std::unique_ptr<SSL_CTX, CtxDeleter>;

BioPtr mem_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// A certificate chain and its key, read and checked.
struct KeyPair {
  X509Ptr leaf;
  std::vector<X509Ptr> chain;
  PkeyPtr key;
};

std::optional<FileProblem> load_key_pair(const std::string& cert_file, const std::string& key_file,
                                         KeyPair& out) {
  auto cert_problem = [&](const std::string& what) {
    return FileProblem{FileRole::Cert, "certificate file '" + cert_file + "': " + what};
  };
  auto key_problem = [&](const std::string& what) {
    return FileProblem{FileRole::Key, "private key file '" + key_file + "': " + what};
  };
  ERR_clear_error();
  std::string data, why;
  if (!read_file(cert_file, data, why)) return cert_problem(why);
  {
    BioPtr bio = mem_bio(data);
    if (!bio) return cert_problem(with_reason("out of memory"));
    out.leaf.reset(PEM_read_bio_X509_AUX(bio.get(), nullptr, no_passphrase, nullptr));
    if (!out.leaf) return cert_problem(with_reason("no PEM certificate found"));
    while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)) {
      out.chain.emplace_back(extra);
    }
    // The loop ends on "no start line" at the end of the file; anything else is a broken
    // certificate further down.
    const unsigned long e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
      return cert_problem(with_reason("invalid certificate in the chain"));
    }
    ERR_clear_error();
  }
  const ASN1_TIME* not_after = X509_get0_notAfter(out.leaf.get());
  const ASN1_TIME* not_before = X509_get0_notBefore(out.leaf.get());
  if (X509_cmp_current_time(not_after) < 0) {
    return cert_problem("certificate expired on " + asn1_time_text(not_after));
  }
  if (X509_cmp_current_time(not_before) > 0) {
    return cert_problem("certificate is not valid before " + asn1_time_text(not_before));
  }

  if (!read_file(key_file, data, why)) return key_problem(why);
  if (data.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
      data.find("Proc-Type: 4,ENCRYPTED") != std::string::npos) {
    return key_problem("encrypted private keys are not supported (no pass phrase can be given)");
  }
  if (data.find("PRIVATE KEY-----") == std::string::npos) {
    return key_problem("no PEM private key found");
  }
  {
    BioPtr bio = mem_bio(data);
    if (!bio) return key_problem(with_reason("out of memory"));
    out.key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!out.key) return key_problem(with_reason("unreadable private key"));
  }
  ERR_clear_error();
  if (X509_check_private_key(out.leaf.get(), out.key.get()) != 1) {
    return key_problem(with_reason("key does not match certificate '" + cert_file + "'"));
  }
  return std::nullopt;
}

// Installs a checked pair on `ctx`.
bool use_key_pair(SSL_CTX* ctx, KeyPair& pair, std::string& error) {
  ERR_clear_error();
  if (SSL_CTX_use_certificate(ctx, pair.leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, pair.key.get()) != 1 || SSL_CTX_clear_chain_certs(ctx) != 1) {
    error = with_reason("cannot use certificate");
    return false;
  }
  for (X509Ptr& c : pair.chain) {
    if (SSL_CTX_add0_chain_cert(ctx, c.get()) != 1) {
      error = with_reason("cannot use certificate chain");
      return false;
    }
    c.release();  // owned by ctx now
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    error = with_reason("key does not match certificate");
    return false;
  }
  return true;
}

// CA bundle into `store`.
std::optional<std::string> load_ca(const std::string& ca_file, X509_STORE* store) {
  auto problem = [&](const std::string& what) { return "CA file '" + ca_file + "': " + what; };
  ERR_clear_error();
  std::string data, why;
  if (!read_file(ca_file, data, why)) return problem(why);
  BioPtr bio = mem_bio(data);
  if (!bio) return problem(with_reason("out of memory"));
  STACK_OF(X509_INFO)* infos = PEM_X509_INFO_read_bio(bio.get(), nullptr, no_passphrase, nullptr);
  if (infos == nullptr) return problem(with_reason("unreadable PEM"));
  int count = 0;
  bool failed = false;
  for (int i = 0; i < sk_X509_INFO_num(infos); ++i) {
    X509_INFO* info = sk_X509_INFO_value(infos, i);
    if (info->x509 == nullptr) continue;
    if (store != nullptr && X509_STORE_add_cert(store, info->x509) != 1) {
      failed = true;
      break;
    }
    ++count;
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  if (failed) return problem(with_reason("cannot add certificate"));
  if (count == 0) return problem("no PEM certificate found");
  ERR_clear_error();
  return std::nullopt;
}

int version_number(const std::string& v) {
  if (v == "1.2") return TLS1_2_VERSION;
  if (v == "1.3") return TLS1_3_VERSION;
  return 0;
}

// DNS names a certificate answers to, lower case: subjectAltName DNS entries, else the last
// CN (as RFC 6125 says: the CN only counts when there is no DNS SAN).
std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_STRING* s = gn->d.dNSName;
      std::string name(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (!name.empty()) names.push_back(lower(name));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    const X509_NAME* subject = X509_get_subject_name(cert);
    int idx = -1, last = -1;
    while ((idx = X509_NAME_get_index_by_NID(subject, NID_commonName, idx)) >= 0) last = idx;
    if (last >= 0) {
      const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, last));
      unsigned char* utf8 = nullptr;
      const int n = ASN1_STRING_to_UTF8(&utf8, s);
      if (n > 0) names.push_back(lower(std::string(reinterpret_cast<char*>(utf8), n)));
      OPENSSL_free(utf8);
    }
  }
  return names;
}

// "*.example.test" matches exactly one label in front of "example.test".
bool wildcard_match(const std::string& pattern, const std::string& host) {
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return false;
  const std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.test"
  if (host.size() <= suffix.size()) return false;
  if (host.compare(host.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  const std::string_view label = std::string_view(host).substr(0, host.size() - suffix.size());
  return !label.empty() && label.find('.') == std::string_view::npos;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

int alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  // The client's list: length-prefixed names. Only HTTP/1.1 is spoken here.
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (len == 0 || i + 1 + len > inlen) break;  // malformed: ignore the rest
    if (len == sizeof kAlpnHttp11 - 1 &&
        std::memcmp(in + i + 1, kAlpnHttp11 + 1, sizeof kAlpnHttp11 - 1) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  // Nothing we speak (e.g. h2 only): carry on without ALPN rather than failing.
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Checks usable without a context.

std::optional<FileProblem> check_key_pair(const std::string& cert_file,
                                          const std::string& key_file) {
  KeyPair pair;
  return load_key_pair(cert_file, key_file, pair);
}

std::optional<std::string> check_ca_file(const std::string& ca_file) {
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return std::string("out of memory");
  auto problem = load_ca(ca_file, store);
  X509_STORE_free(store);
  return problem;
}

std::optional<std::string> check_cipher_list(const std::string& ciphers) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return with_reason("cannot create an SSL_CTX");
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1) {
    return with_reason("no valid cipher in '" + ciphers + "'");
  }
  return std::nullopt;
}

std::optional<std::string> check_ciphersuites(const std::string& suites) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return with_reason("cannot create an SSL_CTX");
  // OpenSSL skips unknown names as long as one is valid: check them one by one so that a
  // typo is not silently dropped.
  size_t start = 0;
  while (start <= suites.size()) {
    size_t colon = suites.find(':', start);
    if (colon == std::string::npos) colon = suites.size();
    const std::string name = suites.substr(start, colon - start);
    ERR_clear_error();
    if (name.empty() || SSL_CTX_set_ciphersuites(ctx.get(), name.c_str()) != 1) {
      ERR_clear_error();
      return "unknown TLS 1.3 ciphersuite '" + name +
             "' (known: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
             "TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256, TLS_AES_128_CCM_8_SHA256)";
    }
    start = colon + 1;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// ServerContext

namespace {

struct TicketKey {
  unsigned char name[16];
  unsigned char aes[32];   // AES-256-CBC
  unsigned char hmac[32];  // HMAC-SHA256
};

bool new_ticket_key(TicketKey& k) {
  return RAND_bytes(k.name, sizeof k.name) == 1 && RAND_bytes(k.aes, sizeof k.aes) == 1 &&
         RAND_bytes(k.hmac, sizeof k.hmac) == 1;
}

}  // namespace

struct ServerContext::Impl {
  struct Entry {
    SSL_CTX* ctx = nullptr;          // owned
    std::vector<std::string> names;  // lower case; may start with "*."
  };
  std::vector<Entry> entries;  // [0] = default = ServerContext::ctx_
  bool tickets = false;
  // Workers share one context: handshakes on any thread read the keys, worker 0 rotates them.
  std::mutex keys_mu;
  TicketKey current{};
  TicketKey previous{};
  bool have_previous = false;

  ~Impl() {
    for (Entry& e : entries) SSL_CTX_free(e.ctx);
    OPENSSL_cleanse(&current, sizeof current);
    OPENSSL_cleanse(&previous, sizeof previous);
  }

  // Index of the certificate for `host` (lower case): exact names first, then wildcards,
  // in configuration order; 0 when none matches.
  size_t pick(const std::string& host) const {
    for (size_t i = 0; i < entries.size(); ++i) {
      for (const std::string& n : entries[i].names) {
        if (n == host) return i;
      }
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      for (const std::string& n : entries[i].names) {
        if (wildcard_match(n, host)) return i;
      }
    }
    return 0;
  }

  static int servername_cb(SSL* ssl, int*, void* arg) {
    const auto* self = static_cast<const Impl*>(arg);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr || self->entries.size() < 2) return SSL_TLSEXT_ERR_OK;
    std::string host = lower(name);
    if (!host.empty() && host.back() == '.') host.pop_back();
    const size_t i = self->pick(host);
    if (i != 0 && SSL_set_SSL_CTX(ssl, self->entries[i].ctx) == nullptr) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
  }

  // enc = 1: new ticket, encrypted with the current key. enc = 0: a ticket to decrypt, with
  // the key named `key_name`: 1 = current key, 2 = previous key (accepted, and a new ticket
  // is issued), 0 = unknown key (no resumption: full handshake).
  static int ticket_cb(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                       EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx, int enc) {
    auto* self = static_cast<Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    if (self == nullptr) return -1;
    auto set_keys = [&](const TicketKey& k, int encrypt) {
      OSSL_PARAM params[3];
      params[0] = OSSL_PARAM_construct_octet_string(
          OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(k.hmac), sizeof k.hmac);
      params[1] =
          OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
      params[2] = OSSL_PARAM_construct_end();
      if (EVP_MAC_CTX_set_params(hctx, params) != 1) return false;
      return EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv, encrypt) == 1;
    };
    std::lock_guard lock(self->keys_mu);
    if (enc == 1) {
      if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
      std::memcpy(key_name, self->current.name, sizeof self->current.name);
      return set_keys(self->current, 1) ? 1 : -1;
    }
    if (std::memcmp(key_name, self->current.name, sizeof self->current.name) == 0) {
      return set_keys(self->current, 0) ? 1 : -1;
    }
    if (self->have_previous &&
        std::memcmp(key_name, self->previous.name, sizeof self->previous.name) == 0) {
      return set_keys(self->previous, 0) ? 2 : -1;
    }
    return 0;
  }
};

ServerContext::~ServerContext() = default;  // Impl frees every SSL_CTX, ctx_ included

std::unique_ptr<ServerContext> ServerContext::create(const TlsServerConfig& cfg,
                                                     std::string& error) {
  if (cfg.certificates.empty()) {
    error = "no certificate configured";
    return nullptr;
  }
  const int min_version = version_number(cfg.min_version);
  if (min_version == 0) {
    error = "unsupported min_version '" + cfg.min_version + "' (expected 1.2 or 1.3)";
    return nullptr;
  }
  std::unique_ptr<ServerContext> sc(new ServerContext());
  sc->impl_ = std::make_unique<Impl>();
  Impl& impl = *sc->impl_;
  impl.tickets = cfg.session_tickets;
  if (impl.tickets && !new_ticket_key(impl.current)) {
    error = with_reason("cannot generate a session ticket key");
    return nullptr;
  }
  // A ticket made with key K is accepted until K has been rotated out twice: at least one
  // rotation period. Its advertised lifetime (and the session cache's) is that period.
  const long lifetime = std::clamp<long>(static_cast<long>(cfg.ticket_key_rotation.count() / 1000),
                                         1, kMaxTicketLifetime);

  for (const TlsCertificate& cert : cfg.certificates) {
    KeyPair pair;
    if (auto problem = load_key_pair(cert.cert_file, cert.key_file, pair)) {
      error = problem->message;
      return nullptr;
    }
    std::vector<std::string> names = certificate_names(pair.leaf.get());
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) {
      error = with_reason("cannot create an SSL_CTX");
      return nullptr;
    }
    impl.entries.push_back(Impl::Entry{ctx, std::move(names)});
    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, 0) != 1) {
      error = with_reason("cannot set the protocol versions");
      return nullptr;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 (cfg.session_tickets ? 0 : SSL_OP_NO_TICKET));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const std::string ciphers = cfg.ciphers.empty() ? kDefaultCiphers : cfg.ciphers;
    if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
      error = with_reason("no valid cipher in ciphers '" + ciphers + "'");
      return nullptr;
    }
    if (!cfg.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, cfg.ciphersuites.c_str()) != 1) {
      error = with_reason("no valid ciphersuite in ciphersuites '" + cfg.ciphersuites + "'");
      return nullptr;
    }
    SSL_CTX_set_dh_auto(ctx, 1);  // only matters if `ciphers` lets DHE in
    if (!use_key_pair(ctx, pair, error)) {
      error = "certificate file '" + cert.cert_file + "': " + error;
      return nullptr;
    }
    SSL_CTX_set_app_data(ctx, &impl);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, nullptr);
    SSL_CTX_set_tlsext_servername_callback(ctx, Impl::servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, &impl);
    SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof kSessionIdContext);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_timeout(ctx, lifetime);
    if (cfg.session_tickets) SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, Impl::ticket_cb);
  }
  sc->ctx_ = impl.entries[0].ctx;
  ERR_clear_error();
  return sc;
}

void ServerContext::rotate_ticket_keys() {
  if (!impl_ || !impl_->tickets) return;
  TicketKey next{};
  if (!new_ticket_key(next)) {
    ERR_clear_error();
    return;  // keep the current key rather than have none
  }
  std::lock_guard lock(impl_->keys_mu);
  impl_->previous = impl_->current;
  impl_->have_previous = true;
  impl_->current = next;
  OPENSSL_cleanse(&next, sizeof next);
}

// ---------------------------------------------------------------------------------------------
// ClientContext

ClientContext::~ClientContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<ClientContext> ClientContext::create(const TlsClientConfig& cfg,
                                                     std::string& error) {
  std::unique_ptr<ClientContext> cc(new ClientContext());
  cc->cfg_ = cfg;
  ERR_clear_error();
  cc->ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX* ctx = cc->ctx_;
  if (ctx == nullptr) {
    error = with_reason("cannot create an SSL_CTX");
    return nullptr;
  }
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, 0) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kDefaultCiphers) != 1) {
    error = with_reason("cannot configure the TLS client");
    return nullptr;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!cfg.ca_file.empty()) {
    if (auto problem = load_ca(cfg.ca_file, SSL_CTX_get_cert_store(ctx))) {
      error = *problem;
      return nullptr;
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    error = with_reason("cannot load the system's trusted certificates");
    return nullptr;
  }
  SSL_CTX_set_verify(ctx, cfg.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!cfg.cert_file.empty() || !cfg.key_file.empty()) {
    if (cfg.cert_file.empty() || cfg.key_file.empty()) {
      error = "a client certificate needs both cert and key";
      return nullptr;
    }
    KeyPair pair;
    if (auto problem = load_key_pair(cfg.cert_file, cfg.key_file, pair)) {
      error = problem->message;
      return nullptr;
    }
    if (!use_key_pair(ctx, pair, error)) {
      error = "certificate file '" + cfg.cert_file + "': " + error;
      return nullptr;
    }
  }
  if (SSL_CTX_set_alpn_protos(ctx, kAlpnHttp11, sizeof kAlpnHttp11) != 0) {  // 0 = success
    error = with_reason("cannot set ALPN");
    return nullptr;
  }
  ERR_clear_error();
  return cc;
}

// ---------------------------------------------------------------------------------------------
// Session

Session::Session(SSL* ssl) : ssl_(ssl), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())) {
  if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) {
    BIO_free(in_);
    BIO_free(out_);
    in_ = out_ = nullptr;
    return;
  }
  // Empty BIO = "retry later", never EOF: the socket layer decides when the stream ended.
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_);  // ssl_ owns both now
}

Session::~Session() {
  // A connection that simply ends (TCP close, no close_notify, as browsers often do) after a
  // clean handshake keeps its session resumable; OpenSSL would otherwise drop it from the
  // cache. Sessions of failed connections are still discarded.
  if (ssl_ != nullptr && done_ && error_.empty()) {
    SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  SSL_free(ssl_);
}

std::unique_ptr<Session> Session::server(const ServerContext& ctx) {
  ERR_clear_error();
  std::unique_ptr<Session> s(new Session(SSL_new(ctx.ctx())));
  if (s->in_ == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(s->ssl_);
  return s;
}

std::unique_ptr<Session> Session::client(const ClientContext& ctx, const std::string& host) {
  ERR_clear_error();
  std::unique_ptr<Session> s(new Session(SSL_new(ctx.ctx())));
  if (s->in_ == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  const TlsClientConfig& cfg = ctx.config();
  std::string name = cfg.sni.empty() ? host : cfg.sni;
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  if (!name.empty() && name.back() == '.') name.pop_back();
  const bool ip = is_ip_literal(name);
  bool ok = true;
  // RFC 6066: SNI carries host names only, never an address.
  if (!name.empty() && !ip) ok = SSL_set_tlsext_host_name(s->ssl_, name.c_str()) == 1;
  if (ok && cfg.verify && !name.empty()) {
    if (ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_), name.c_str()) == 1;
    } else {
      SSL_set_hostflags(s->ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(s->ssl_, name.c_str()) == 1;
    }
  }
  if (!ok) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_connect_state(s->ssl_);
  return s;
}

bool Session::feed(const char* data, size_t len, std::string& plain) {
  if (!error_.empty()) return false;
  while (len > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(len, INT_MAX));
    if (BIO_write(in_, data, chunk) != chunk) {
      error_ = with_reason("out of memory");
      return false;
    }
    data += chunk;
    len -= static_cast<size_t>(chunk);
  }
  return pump(&plain);
}

bool Session::write(std::string_view plain) {
  if (!error_.empty()) return false;
  if (plain.empty()) return true;
  if (!done_ || !pending_.empty()) {  // keep the order: after what is already waiting
    pending_.append(plain);
    return done_ ? pump(nullptr) : true;
  }
  while (!plain.empty()) {
    ERR_clear_error();
    const int chunk = static_cast<int>(std::min<size_t>(plain.size(), 1 << 30));
    const int r = SSL_write(ssl_, plain.data(), chunk);
    if (r > 0) {
      plain.remove_prefix(static_cast<size_t>(r));
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      pending_.assign(plain);  // retried by the next feed() or write()
      return true;
    }
    return fail(e);
  }
  return true;
}

void Session::take_output(std::string& wire) {
  for (;;) {
    const size_t n = BIO_ctrl_pending(out_);
    if (n == 0) return;
    const size_t old = wire.size();
    const int chunk = static_cast<int>(std::min<size_t>(n, INT_MAX));
    wire.resize(old + static_cast<size_t>(chunk));
    const int got = BIO_read(out_, wire.data() + old, chunk);
    wire.resize(old + static_cast<size_t>(std::max(got, 0)));
    if (got <= 0) return;
  }
}

void Session::start() {
  if (SSL_is_server(ssl_) || !error_.empty()) return;
  pump(nullptr);
}

void Session::shutdown() {
  // Before the handshake is done there is nothing to close politely (OpenSSL would refuse).
  if (!done_ || !error_.empty() || (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues close_notify in out_; the peer's reply is not waited for
  ERR_clear_error();
}

std::string Session::sni() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? name : "";
}

std::string Session::version() const { return SSL_get_version(ssl_); }

std::string Session::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

bool Session::fail(int ssl_error) {
  std::string reason = take_openssl_reason();
  if (reason.empty()) {
    switch (ssl_error) {
      case SSL_ERROR_SYSCALL:
        reason = "unexpected end of the TLS stream";
        break;
      case SSL_ERROR_ZERO_RETURN:
        reason = "connection closed by the peer";
        break;
      default:
        reason = "TLS error " + std::to_string(ssl_error);
    }
  }
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK && reason == "certificate verify failed") {
    reason += ": " + std::string(X509_verify_cert_error_string(verify));
  }
  error_ = reason;
  return false;
}

bool Session::pump(std::string* plain) {
  if (!done_) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
      return fail(e);
    }
    done_ = true;
  }
  // Application data written so far (before the handshake ended, or held back by a retry).
  while (!pending_.empty()) {
    ERR_clear_error();
    const int chunk = static_cast<int>(std::min<size_t>(pending_.size(), 1 << 30));
    const int r = SSL_write(ssl_, pending_.data(), chunk);
    if (r > 0) {
      pending_.erase(0, static_cast<size_t>(r));
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;  // retried next pump
    return fail(e);
  }
  if (plain == nullptr) return true;
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    const int r = SSL_read(ssl_, buf, sizeof buf);
    if (r > 0) {
      plain->append(buf, static_cast<size_t>(r));
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
    if (e == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return true;
    }
    return fail(e);
  }
}

}  // namespace stickyd::tls
