// The proxy: a Server accepts ClientConns; each ClientConn runs one exchange at a time
// (request -> routed backend -> response, or a websocket tunnel) through an explicit state
// machine, borrowing an UpstreamConn from its backend's keep-alive pool.
//
// Ownership: the Server owns every connection object; libuv owns nothing. A connection is
// destroyed only from its handles' close callbacks (Socket::on_closed), so a pointer held by
// the peer connection stays valid until the peer is told to drop it (detach).
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stickyd/admin.hpp"
#include "stickyd/config.hpp"
#include "stickyd/discovery.hpp"
#include "stickyd/engineio.hpp"
#include "stickyd/health.hpp"
#include "stickyd/metrics.hpp"
#include "stickyd/http_head.hpp"
#include "stickyd/request_reader.hpp"
#include "stickyd/net.hpp"
#include "stickyd/pacing.hpp"
#include "stickyd/router.hpp"
#include "stickyd/workers.hpp"

namespace stickyd {

class Server;
class ClientConn;
namespace tls {
class ServerContext;
class ClientContext;
}

// One connection to a backend. It writes what its ClientConn gives it, parses responses with
// llhttp and reports every event back; between exchanges it waits in its backend's pool.
class UpstreamConn final : public Socket {
 public:
  UpstreamConn(Server& server, int backend);

  int backend() const { return backend_; }
  bool connected() const { return connected_; }
  bool reused() const { return exchanges_ > 0; }
  bool answered() const { return answered_; }  // some byte of a response arrived

  void connect();                                  // reports connected()/connect_failed()
  void attach(ClientConn* client, bool head_request);  // start serving one exchange
  void detach();                                   // the client is gone or done with us
  bool reusable() const;                           // clean end of a keep-alive response
  void park(Millis idle_timeout);                  // into the pool: only watch for close
  void begin_tunnel(ClientConn* client);           // raw bytes both ways from now on
  void release_head();  // the response head has been forwarded (tunnels keep no buffers)

  const HttpHead& head() const { return head_; }
  int status() const { return llhttp_get_status_code(const_cast<llhttp_t*>(&parser_)); }
  int http_minor() const { return llhttp_get_http_minor(const_cast<llhttp_t*>(&parser_)); }
  bool response_needs_eof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  // The response is a protocol switch llhttp accepts (101 with Upgrade and Connection: upgrade).
  bool upgraded() const { return llhttp_get_upgrade(const_cast<llhttp_t*>(&parser_)) != 0; }

 private:
  enum class Pause : uint8_t { None, HeadDone, MessageDone };

  void on_read(const char* data, size_t len) override;
  void on_eof() override;
  void on_read_error(int status) override;
  void on_write_error(int status) override;
  void on_drained() override;
  void on_spliced(size_t n) override;
  void on_deadline() override;
  void on_closed() override;
  void on_tls_error(const std::string& why) override;

  void execute(const char* data, size_t len);
  void fail(int status);

  static void connect_cb(uv_connect_t* req, int status);
  static int cb_message_begin(llhttp_t* p);
  static int cb_status(llhttp_t* p, const char* at, size_t n);
  static int cb_header_field(llhttp_t* p, const char* at, size_t n);
  static int cb_header_value(llhttp_t* p, const char* at, size_t n);
  static int cb_headers_complete(llhttp_t* p);
  static int cb_body(llhttp_t* p, const char* at, size_t n);
  static int cb_message_complete(llhttp_t* p);
  static const llhttp_settings_t* settings();

  Server& server_;
  ClientConn* client_ = nullptr;
  llhttp_t parser_;
  HttpHead head_;
  uv_connect_t connect_req_;
  int backend_;
  uint32_t exchanges_ = 0;
  Pause pause_ = Pause::None;
  bool connected_ = false;
  bool in_body_ = false;
  bool head_request_ = false;
  bool tunnel_ = false;
  bool parked_ = false;
  bool broken_ = false;  // protocol error or stray bytes: never reuse
  bool eof_ = false;
  bool counted_connecting_ = false;
  bool answered_ = false;
  void connect_settled();  // the connect ended (either way): no longer pending
};

class ClientConn final : public Socket, private RequestSink {
 public:
  // `tls`: the listener's context when it terminates TLS, else null.
  ClientConn(Server& server, std::shared_ptr<const tls::ServerContext> tls, bool secure_cookies,
             Millis handshake_timeout);
  void start();  // after uv_accept
  bool idle() const { return state_ == State::Idle && pending_.empty(); }
  void close_now() { abort(nullptr); }
  // SIGTERM: an idle connection stays open until idle for timeouts.drain_idle since its last
  // response (its next request is answered with Connection: close); a busy one is untouched.
  void drain();
  // Backend of the websocket tunnel this connection carries, else -1.
  int tunnel_backend() const { return state_ == State::Tunnel ? route_.backend : -1; }
  // The sid of a polling GET waiting for its answer (no response byte sent yet), else "".
  std::string_view held_poll_sid() const {
    return state_ == State::Forwarding && route_.engineio && !route_.handshake && method_get_ &&
                   !upgrade_requested_
               ? std::string_view(route_.key)
               : std::string_view();
  }

  // Events from the UpstreamConn serving the current exchange.
  void upstream_connected();
  void upstream_connect_failed(int status);
  void upstream_head();                       // final or interim response head parsed
  void upstream_body(const char* raw, size_t n);     // framing bytes exactly as received
  void upstream_decoded(const char* data, size_t n);  // de-chunked body bytes
  void upstream_complete();
  void upstream_upgraded(const char* rest, size_t n);
  void upstream_failed(int status, const char* what);
  void upstream_timeout();
  void upstream_drained();
  void upstream_read_done();  // end of one backend read: flush what it made us send
  void upstream_tunnel_data(const char* data, size_t n);
  void upstream_tunnel_spliced(size_t n);  // splice mode: n backend bytes on their way
  void upstream_tunnel_eof();
  void forget_upstream(UpstreamConn* u) {
    if (upstream_ == u) upstream_ = nullptr;
  }

 private:
  enum class State : uint8_t {
    Idle,              // between requests (keep-alive); the client timeout runs
    RequestHead,       // reading a request head
    Connecting,        // routed; waiting for a backend connection
    Forwarding,        // request sent or streaming; no response byte sent to the client yet
    HoldingHandshake,  // reading a small handshake response to learn its sid
    Responding,        // streaming the response to the client
    HoldingUpgrade,    // 101 of a websocket-first handshake held until the open packet
    Tunnel,            // websocket: bytes copied both ways
    Closing,
  };
  void on_read(const char* data, size_t len) override;
  void on_eof() override;
  void on_read_error(int status) override;
  void on_write_error(int status) override;
  void on_drained() override;
  void on_spliced(size_t n) override;
  void on_deadline() override;
  void on_closed() override;
  void on_tls_error(const std::string& why) override;
  void on_tls_established() override;

  // RequestSink
  void on_request_begin() override;
  void on_forward_body(std::string_view bytes) override;  // re-framed body bytes

  void execute(const char* data, size_t len);
  void parse_error();
  void on_request_head();
  void on_request_complete();
  void acquire_upstream(bool allow_reuse);
  void build_upstream_head(std::string& out) const;
  // What the proxy changes in a response head on its way to the client.
  struct ResponseEdit {
    std::string backend_sid;    // a new sid as the backend wrote it...
    std::string tagged_sid;     // ...and as the client gets it (proxy tagging), else empty
    std::string inject_cookie;  // session Set-Cookie to add, else empty
    const std::string* body = nullptr;  // replacement body: framing becomes Content-Length
  };
  void write_response_head(const ResponseEdit& edit);
  void finish_handshake_hold();
  void learn_and_cookie(std::string_view sid_from_cookie, const OpenPacket* open,
                        ResponseEdit* edit);
  std::string forwarded_cookie(std::string_view header) const;
  void respond_engineio_session_unknown();
  void finish_exchange();
  void finish_upgrade_hold(bool give_up);
  void pin_learnt(std::string_view sid);
  std::string_view session_cookie_in(const HttpHead& h) const;
  void start_tunnel(std::string_view from_backend);
  void respond_local(int status, std::string_view reason, std::string_view detail);
  void release_upstream(bool keep);
  void abort(const char* why);
  void close_gracefully();
  void update_reading();
  bool maybe_splice();     // tunnel: switch both sockets to splice(2) once nothing is buffered
  bool tunnel_finished();  // both ways ended and flushed: closed (true)
  // Books the end of an exchange once: counters, metrics, access log, and (unless a tunnel
  // keeps it) the session's pin.
  void settle(const char* outcome, bool keep_pin = false);
  void release_pin();
  void release_session();  // pin and tunnel accounting, when the connection ends
  // Idle between requests: keepalive_or_client since idle_since_ms_ (draining: at most
  // drain_idle); already past it, the deadline fires at once.
  void set_idle_deadline();

  Server& server_;
  std::shared_ptr<const tls::ServerContext> tls_ctx_;  // kept alive by its connections (reload)
  bool secure_cookies_ = false;
  Millis handshake_timeout_{0};
  RequestReader reader_;
  HttpHead& head_;  // reader_'s: the current request's head
  std::string peer_ip_;
  std::string pending_;       // client bytes not parsed yet (pipelined requests, early tunnel bytes)
  std::string early_body_;    // request body that arrived before the backend connection
  std::string hold_raw_;      // handshake response body as received (framing included)
  std::string hold_body_;     // the same, de-chunked, to parse the open packet
  std::string upgrade_value_;  // the allowed Upgrade tokens forwarded, when upgrading
  UpstreamConn* upstream_ = nullptr;
  Route route_;
  State state_ = State::Idle;
  bool reader_paused_ = false;  // the reader stopped at a message end or upgrade
  int status_ = 0;             // status sent to the client for this exchange
  int64_t started_ms_ = 0;
  int64_t idle_since_ms_ = 0;  // accepted, TLS established, or last response done
  uint64_t bytes_to_client_ = 0;
  bool request_done_ = false;
  bool head_sent_ = false;
  bool retried_ = false;
  bool pinned_ = false;
  bool head_request_ = false;
  bool upgrade_requested_ = false;
  bool method_get_ = false;
  bool keep_alive_ = true;
  bool close_after_response_ = false;
  bool client_eof_ = false;
  bool upstream_eof_ = false;  // tunnel half-close bookkeeping
  bool hold_gave_up_ = false;
  bool seen_bytes_ = false;    // some bytes of the current request arrived (for 408)
  bool in_flight_ = false;     // counted in the backend's in_flight
  bool settled_ = true;        // the current exchange's end has been booked
  bool local_ = false;         // the current answer came from stickyd itself
  bool head_parsed_ = false;   // the current request's head is complete (method known)
  bool local_answer_ = false;  // answered without a backend; the connection stays open
  bool tunnel_counted_ = false;
  bool admitted_ = false;      // counted in the server's per-address connections
  uint64_t client_hash_ = 0;   // of the client address, for the `hash` policy
};

class Server final : public AdminModel {
 public:
  // Worker `worker` of shared.workers() (see workers.hpp); worker 0 also runs health checks,
  // the admin API and the affinity expiry sweep.
  Server(uv_loop_t* loop, Config config, SharedState& shared, size_t worker = 0);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before start(): sockets to adopt instead of binding, per listen entry per worker (an
  // upgrade or systemd passed them), and the admin one (worker 0; -1: bind).
  void inherit(const std::vector<std::vector<std::vector<int>>>& per_listen, int admin_fd);
  bool start();  // binds every listener (and the admin one); false (logged) when one fails
  // (listen entry, fd) of every listening socket, and the admin one (-1: none): for SIGUSR2.
  std::vector<std::pair<size_t, int>> listening_fds() const;
  int admin_fd() const;
  // "listening" lines: Workers logs them once every worker accepts (readiness for scripts).
  void log_listening() const;
  void stop();   // closes listeners and every connection now
  // SIGTERM: stop accepting; in-flight requests finish and their responses say
  // Connection: close; idle keep-alive connections close after timeouts.drain_idle (or on
  // their next response); websocket tunnels close spread over the last
  // timeouts.close_spread of `grace`; what is left at its end closes (stop()).
  void drain(Millis grace);
  // Worker 0, once a new process serves (SIGUSR2): it answers the admin API from now on.
  void hand_over();
  // SIGHUP: applies a validated config in place. Backends are matched by name and keep their
  // index; new ones are appended; removed ones stop getting traffic and lose their sessions.
  // Listen addresses need a restart (a change is logged and ignored). Live sessions, pooled
  // connections and tunnels are kept.
  // false (logged) when it was refused (a TLS file went bad since --check). `event` names
  // the log line (worker 0), none when null (discovery logs once every worker applied it).
  bool reload(Config next, const char* event = "config reloaded");
  // Worker 0, before a SIGHUP's reload(): restarts discovery on `next`'s entries and adds the
  // backends it knows, so that a reload keeps them (they are not in the file).
  void add_discovered(Config& next);
  // Worker 0: runs after discovery changed the backend set on every worker.
  std::function<void()> on_backends_changed;

  size_t worker() const { return worker_; }
  // Applied on every worker: worker 0 decides (checks, admin API) and tells the others.
  void apply_health(int backend, Health h);
  void apply_state(int backend, AdminState s);
  void report_traffic(int backend, bool ok);  // worker 0: passive health marking

  uv_loop_t* loop() const { return loop_; }
  const Config& config() const { return config_; }
  const tls::ClientContext* backend_tls(int backend) const {
    return static_cast<size_t>(backend) < backend_tls_.size() ? backend_tls_[static_cast<size_t>(backend)].get() : nullptr;
  }
  Router& router() { return router_; }
  Metrics& metrics() { return metrics_; }
  int64_t now_ms() const { return static_cast<int64_t>(uv_now(loop_)); }
  bool draining() const { return draining_; }

  // A parked connection to `backend` (reused = true), else a new connecting one.
  UpstreamConn* acquire_upstream(int backend, bool allow_reuse, bool& reused);
  void park_upstream(UpstreamConn* u);  // back to the pool, or closed when the pool is full
  void unpark(UpstreamConn* u);         // it closed while parked
  void connect_result(int backend, bool ok);  // passive health marking
  // Connection limits: false when `ip` already has max_connections_per_ip connections.
  bool admit(const std::string& ip);
  void release_ip(const std::string& ip);

  void destroy(ClientConn* c);
  void destroy(UpstreamConn* u);

  // AdminModel
  std::vector<BackendStatus> backends() override;
  bool set_state(std::string_view backend, AdminState s) override;
  bool set_weight(std::string_view backend, uint32_t w) override;
  void metrics_text(std::string& out) override;
  // Paced eviction (worker 0): the backend is drained now and its sessions are moved off
  // one by one, evenly over `over` (PacedSchedule), in random order. At a session's turn it
  // is marked evicted in the shared table (its next request with the sid gets Engine.IO's
  // 400 and the client re-handshakes elsewhere) and its websocket tunnels, on every worker,
  // are closed (the client reconnects with its own backoff). `ready` or `maint` cancel it.
  bool evict(std::string_view backend, Millis over) override;

  // Websocket tunnels by session id, per worker, for evictions.
  void tunnel_opened(ClientConn* c, const std::string& sid);
  void tunnel_closed(ClientConn* c, const std::string& sid);
  // Tunnels and held polls of these sessions (a paced eviction's turn); how many closed.
  size_t close_sessions_of(const std::vector<std::string>& sids);

 private:
  // One worker's counters, copied on its own thread for the admin API of worker 0.
  struct Counts {
    Metrics metrics;
    std::vector<BackendStatus> backends;  // connections, tunnels, requests by backend index
    size_t worker = 0;
  };
  Counts counts() const;
  // Counts of the other workers, each copied on its own thread (waits at most ~1 s per
  // worker; a worker that does not answer, e.g. one that is stopping, is left out).
  std::vector<Counts> gather_counts();
  std::vector<BackendStatus> backends(const std::vector<Counts>& others);  // others' counts added
  void broadcast(std::function<void(Server&)> task);  // to every other worker
  void apply_batch_writes();  // creates or closes write_batch_ as config_.batch_writes says

  void on_connection(size_t listen_index, uv_stream_t* listener);
  bool build_tls_contexts(const Config& cfg);  // false (logged) when a file went bad since --check
  void on_health(int backend, Health h, const std::string& reason);
  // Worker 0: discovery's set changed; every worker runs with static + discovered backends,
  // and backends that left DNS are drained (no new sessions).
  void on_discovery_change();
  void apply_discovery_drains();
  void expire_discovered();
  void maybe_finish_drain();
  void start_close_spread();  // the spread window begins: schedule this worker's tunnels
  void close_due_tunnels();   // as many as the schedule says are due; re-arms its timer
  struct Eviction {
    int backend = -1;
    int64_t over_ms = 0;
    PacedSchedule schedule;
    std::vector<std::string> sids;  // the sessions it had at the start, shuffled
    size_t next = 0;                // sids before it were evicted or had left
    uint64_t evicted = 0;
    uint64_t gone = 0;              // left on their own
    int64_t ended_ms = -1;
    bool cancelled = false;
    const char* cause = "admin";    // "admin", "left DNS", "health down"
    bool done() const { return ended_ms >= 0; }
  };
  Eviction* eviction_of(int backend);
  void set_paced_down(int backend, bool on);  // worker 0, applied on every worker
  void start_eviction(int backend, Millis over, const char* cause = "admin");
  void end_eviction(Eviction& e, bool cancelled);
  void run_evictions();  // closes what is due, re-arms evict_timer_ at the next due time
  static void sweep_cb(uv_timer_t* t);
  static void evict_cb(uv_timer_t* t);
  static void grace_cb(uv_timer_t* t);
  static void spread_cb(uv_timer_t* t);
  static void ticket_cb(uv_timer_t* t);

  uv_loop_t* loop_;
  SharedState& shared_;
  size_t worker_;
  Config config_;  // reload assigns in place: every `const Config&` handed out stays valid
  Router router_;
  Metrics metrics_;
  std::unique_ptr<HealthChecker> health_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<Discovery> discovery_;  // worker 0
  std::vector<std::string> dns_drained_;  // backends discovery put in Drain (worker 0)
  struct ReloadCounts {
    size_t backends = 0, added = 0, removed = 0;
  } last_reload_;  // of the last reload applied (worker 0)
  std::unique_ptr<WriteBatch> write_batch_;  // this loop's batched writes (batch_writes)
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<size_t> listener_entry_;  // listen entry of each listener (several when inherited)
  std::vector<std::vector<int>> inherited_;  // per listen entry: sockets to adopt
  int inherited_admin_ = -1;
  std::vector<std::shared_ptr<tls::ServerContext>> listener_tls_;  // per listen entry, or null
  std::vector<std::shared_ptr<tls::ClientContext>> backend_tls_;   // per backend, or null
  uv_timer_t ticket_timer_;
  std::unordered_map<ClientConn*, std::unique_ptr<ClientConn>> clients_;
  std::unordered_map<UpstreamConn*, std::unique_ptr<UpstreamConn>> upstreams_;
  std::vector<std::vector<UpstreamConn*>> idle_;  // per backend, most recent last
  int64_t last_refusal_log_ms_ = -1000000;
  uint64_t refused_ = 0;
  uv_timer_t sweep_timer_;
  uv_timer_t grace_timer_;
  uv_timer_t spread_timer_;  // drain: start of the close spread, then each due close
  int64_t grace_end_ms_ = 0;
  bool spreading_ = false;
  PacedSchedule spread_;                       // the tunnels open when the spread began
  std::unordered_set<ClientConn*> spread_left_;  // of those, the ones not gone yet
  uv_timer_t evict_timer_;
  std::vector<Eviction> evictions_;  // worker 0: at most one per backend, kept once done
  std::unordered_multimap<std::string, ClientConn*> tunnels_by_sid_;
  bool stopped_ = false;
  bool draining_ = false;
};

}  // namespace stickyd
