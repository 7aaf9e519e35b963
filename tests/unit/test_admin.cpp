// AdminServer over real sockets on 127.0.0.1: the server runs on a uv loop in this thread, a
// blocking client runs on a second thread; the loop runs until the client is done, bounded by
// a deadline timer.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <thread>

#include "stickyd/admin.hpp"
#include "stickyd/log.hpp"

using namespace stickyd;

namespace {

// ---------------------------------------------------------------- the model

struct FakeModel final : AdminModel {
  std::vector<BackendStatus> list;
  int metrics_calls = 0;

  FakeModel() {
    BackendStatus a;
    a.name = "n1";
    a.address = "127.0.0.1:3001";
    a.state = "ready";
    a.health = "up";
    a.weight = 1;
    a.effective_weight = 1;
    a.sessions = 10;
    a.connections = 2;
    a.tunnels = 1;
    a.requests = 100;
    BackendStatus b = a;
    b.name = "n2";
    b.address = "127.0.0.1:3002";
    b.health = "unchecked";
    b.sessions = 0;
    b.connections = 0;
    b.tunnels = 0;
    b.requests = 0;
    BackendStatus c = b;
    c.name = "odd.name";
    c.address = "q\"uote\\back\nline\x01\xc3\xa9\xff";  // escaping; é stays, 0xff is invalid
    c.health = "down";
    list = {a, b, c};
  }

  BackendStatus* find(std::string_view n) {
    for (BackendStatus& b : list)
      if (b.name == n) return &b;
    return nullptr;
  }
  std::vector<BackendStatus> backends() override { return list; }
  bool set_state(std::string_view n, AdminState s) override {
    BackendStatus* b = find(n);
    if (!b) return false;
    b->state = to_string(s);
    b->effective_weight = s == AdminState::Ready ? b->weight : 0;
    return true;
  }
  bool set_weight(std::string_view n, uint32_t w) override {
    BackendStatus* b = find(n);
    if (!b) return false;
    b->weight = w;
    b->effective_weight = b->state == "ready" ? w : 0;
    return true;
  }
  bool evict(std::string_view n, Millis over) override {
    BackendStatus* b = find(n);
    if (!b) return false;
    b->state = "drain";
    b->effective_weight = 0;
    b->has_eviction = true;
    b->eviction = {};
    b->eviction.over_ms = over.count();
    b->eviction.total = b->sessions;
    return true;
  }
  void metrics_text(std::string& out) override {
    ++metrics_calls;
    std::vector<std::string> names;
    for (auto& b : list) names.push_back(b.name);
    Metrics m(names.size(), names);
    m.handshake(0);
    m.render_prometheus(out, list);
  }
};

// ---------------------------------------------------------------- a blocking client

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::string header(const std::string& n) const {
    auto it = headers.find(n);
    return it == headers.end() ? "" : it->second;
  }
};

class Client {
 public:
  // `from`: the loopback address to connect from (another client address), else 127.0.0.1.
  explicit Client(int port, int rcvbuf = 0, const char* from = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);  // before connect
    if (from) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      REQUIRE(inet_pton(AF_INET, from, &src.sin_addr) == 1);
      REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
    }
    timeval tv{3, 0};  // a broken server fails the test instead of hanging it
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  // Waits up to `t` for the server to send something or close; true when it did.
  bool readable_within(Millis t) {
    if (!buf_.empty()) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(t.count())) == 1;
  }

  // One response; nullopt on EOF, timeout or garbage. `head` = the request was HEAD.
  std::optional<Response> read(bool head = false, bool skip_interim = true) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return std::nullopt;
    Response r;
    std::string head_text = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    size_t eol = head_text.find("\r\n");
    std::string status_line = head_text.substr(0, eol);
    if (status_line.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    r.status = std::atoi(status_line.c_str() + 9);
    while (eol != std::string::npos) {
      size_t start = eol + 2;
      eol = head_text.find("\r\n", start);
      std::string line = head_text.substr(start, eol == std::string::npos ? eol : eol - start);
      size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers[name] = line.substr(v);
    }
    if (r.status == 100) return skip_interim ? read(head) : std::optional<Response>(r);
    size_t len = head ? 0 : static_cast<size_t>(std::atoll(r.header("content-length").c_str()));
    while (buf_.size() < len)
      if (!fill()) return std::nullopt;
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
    return r;
  }

  // True when the server closed the connection (and sent nothing more).
  bool closed_by_peer() {
    if (!buf_.empty()) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0;
  }

  // Closed or reset by the server (a hard close with unread input resets).
  bool gone() {
    if (!buf_.empty()) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool fill() {
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

// One request on a fresh connection.
std::optional<Response> request(int port, const std::string& raw, bool head = false) {
  Client c(port);
  if (!c.connected() || !c.send(raw)) return std::nullopt;
  return c.read(head);
}

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: admin\r\n" + extra + "\r\n";
}

std::string put(const std::string& path, const std::string& body, const std::string& extra = "",
                const char* method = "PUT") {
  return std::string(method) + " " + path + " HTTP/1.1\r\nHost: admin\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

// ---------------------------------------------------------------- the harness

// Everything logged to stderr while it lives.
class StderrCapture {
 public:
  StderrCapture() {
    fflush(stderr);
    saved_ = dup(2);
    char path[] = "/tmp/stickyd-admin-log-XXXXXX";
    fd_ = mkstemp(path);
    unlink(path);
    dup2(fd_, 2);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    std::string out;
    lseek(fd_, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd_, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    fflush(stderr);
    dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  int saved_ = -1;
  int fd_ = -1;
};

struct Harness {
  uv_loop_t loop;
  FakeModel model;
  AdminConfig cfg;
  std::unique_ptr<AdminServer> server;
  int port = 0;

  // `tweak` changes the config (timeouts, limits) before the server is built.
  explicit Harness(const std::string& token = "",
                   const std::function<void(AdminConfig&)>& tweak = {}) {
    signal(SIGPIPE, SIG_IGN);  // as stickyd's main() does
    uv_loop_init(&loop);
    REQUIRE_FALSE(parse_socket_address("127.0.0.1:0", cfg.listen, true).has_value());
    cfg.enabled = true;
    cfg.token = token;
    if (tweak) tweak(cfg);
    server = std::make_unique<AdminServer>(&loop, cfg, model);
    REQUIRE(server->start() == 0);
    std::string addr = server->bound_address();
    REQUIRE(addr.rfind("127.0.0.1:", 0) == 0);
    port = std::atoi(addr.c_str() + 10);
    REQUIRE(port > 0);
  }

  ~Harness() {
    server->stop();
    server.reset();
    uv_run(&loop, UV_RUN_DEFAULT);  // every handle closes: returns at once
    CHECK(uv_loop_close(&loop) == 0);
  }

  // Runs `client(port)` on a thread while the loop serves it; bounded by `limit`.
  void run(const std::function<void(int)>& client, Millis limit = Millis(5000)) {
    struct Ctx {
      bool timed_out = false;
    } ctx;
    uv_async_t done;
    uv_async_init(&loop, &done, [](uv_async_t* a) { uv_stop(a->loop); });
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    deadline.data = &ctx;
    uv_timer_start(
        &deadline,
        [](uv_timer_t* t) {
          static_cast<Ctx*>(t->data)->timed_out = true;
          uv_stop(t->loop);
        },
        static_cast<uint64_t>(limit.count()), 0);
    std::thread th([&] {
      client(port);
      uv_async_send(&done);
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    th.join();
    uv_close(reinterpret_cast<uv_handle_t*>(&done), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_FALSE(ctx.timed_out);
  }

  // Runs the loop until `done()` holds, bounded by `limit`; false on timeout.
  bool run_until(const std::function<bool()>& done, Millis limit = Millis(2000)) {
    bool timed_out = false;
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    deadline.data = &timed_out;
    uv_timer_start(
        &deadline, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; },
        static_cast<uint64_t>(limit.count()), 0);
    while (!done() && !timed_out) uv_run(&loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    return !timed_out;
  }
};

const char* kJsonType = "application/json";

// One request on `c` and its response (which must come).
Response exchange(Client& c, const std::string& raw) {
  REQUIRE(c.send(raw));
  auto r = c.read();
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("admin: GET endpoints") {
  Harness h;
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.connected());

    REQUIRE(c.send(get("/health")));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("content-type") == kJsonType);
    CHECK(r->body == "{\"status\":\"ok\"}\n");
    CHECK(r->header("connection") == "");  // keep-alive is HTTP/1.1's default

    REQUIRE(c.send(get("/metrics")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(r->body.find("\nstickyd_backend_handshakes_total{backend=\"n1\"} 1\n") !=
          std::string::npos);
    CHECK(r->body.find("stickyd_backend_state{backend=\"n2\",state=\"ready\"} 1\n") !=
          std::string::npos);

    REQUIRE(c.send(get("/backends")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("content-type") == kJsonType);
    CHECK(r->body ==
          "{\"backends\":["
          "{\"name\":\"n1\",\"address\":\"127.0.0.1:3001\",\"state\":\"ready\",\"health\":\"up\","
          "\"weight\":1,\"effective_weight\":1,\"sessions\":10,\"connections\":2,\"tunnels\":1,"
          "\"requests\":100},"
          "{\"name\":\"n2\",\"address\":\"127.0.0.1:3002\",\"state\":\"ready\","
          "\"health\":\"unchecked\",\"weight\":1,\"effective_weight\":1,\"sessions\":0,"
          "\"connections\":0,\"tunnels\":0,\"requests\":0},"
          "{\"name\":\"odd.name\",\"address\":\"q\\\"uote\\\\back\\nline\\u0001\xc3\xa9\\ufffd\","
          "\"state\":\"ready\",\"health\":\"down\",\"weight\":1,\"effective_weight\":1,"
          "\"sessions\":0,\"connections\":0,\"tunnels\":0,\"requests\":0}"
          "]}\n");

    REQUIRE(c.send(get("/backends/")));  // trailing slash
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.rfind("{\"backends\":[", 0) == 0);

    REQUIRE(c.send(get("/backends/n2?pretty=1")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.rfind("{\"name\":\"n2\",\"address\":\"127.0.0.1:3002\"", 0) == 0);
    CHECK(r->body.back() == '\n');

    REQUIRE(c.send(get("/backends/odd%2Ename")));  // percent-encoded name
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);

    REQUIRE(c.send(get("/backends/nope")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->header("content-type") == kJsonType);
    CHECK(r->body == "{\"error\":\"unknown backend\"}\n");

    REQUIRE(c.send("HEAD /health HTTP/1.1\r\nHost: a\r\n\r\n"));
    r = c.read(true);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("content-length") == "16");
    CHECK(r->body.empty());

    // Still the same connection, still usable.
    REQUIRE(c.send(get("/health")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
  });
  CHECK(h.model.metrics_calls == 1);
}

TEST_CASE("admin: 404 and 405") {
  Harness h;
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.connected());
    for (const char* path : {"/", "/nothing", "/backends/n1/other", "/backends/n1/state/x",
                             "/backends//state", "/healthz", "/metrics/x"}) {
      CAPTURE(path);
      REQUIRE(c.send(get(path)));
      auto r = c.read();
      REQUIRE(r);
      CHECK(r->status == 404);
      CHECK(r->body == "{\"error\":\"not found\"}\n");
    }
    struct Case {
      std::string raw;
      const char* allow;
    };
    for (const Case& k : {Case{put("/backends", "x"), "GET, HEAD"},
                          Case{"DELETE /backends/n1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET, HEAD"},
                          Case{put("/health", ""), "GET, HEAD"},
                          Case{put("/metrics", "", "", "POST"), "GET, HEAD"},
                          Case{get("/backends/n1/state"), "PUT, POST"},
                          Case{"DELETE /backends/n1/weight HTTP/1.1\r\nHost: a\r\n\r\n",
                               "PUT, POST"}}) {
      CAPTURE(k.raw);
      REQUIRE(c.send(k.raw));
      auto r = c.read();
      REQUIRE(r);
      CHECK(r->status == 405);
      CHECK(r->header("allow") == k.allow);
      CHECK(r->body == "{\"error\":\"method not allowed\"}\n");
    }
    // Not an origin-form target: 400 and the connection ends.
    REQUIRE(c.send("GET http://x/health HTTP/1.1\r\nHost: a\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->header("connection") == "close");
    CHECK(c.closed_by_peer());
  });
}

TEST_CASE("admin: set state and weight, evict, bad values, unknown backends") {
  Harness h;
  StderrCapture log;
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.connected());
    auto call = [&](const std::string& raw) { return exchange(c, raw); };

    Response r = call(put("/backends/n1/state", "drain"));
    CHECK(r.status == 200);
    CHECK(r.header("content-type") == kJsonType);
    CHECK(r.body.find("\"name\":\"n1\"") != std::string::npos);
    CHECK(r.body.find("\"state\":\"drain\"") != std::string::npos);
    CHECK(r.body.find("\"effective_weight\":0") != std::string::npos);

    r = call(put("/backends/n2/state", "{\"state\":\"maint\"}", "Content-Type: application/json\r\n"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"state\":\"maint\"") != std::string::npos);

    r = call(put("/backends/n2/state", " {\"other\":[1], \"state\" : \"ready\"} ") );
    CHECK(r.status == 400);  // nested values are refused

    r = call(put("/backends/n2/state", "ready\r\n", "", "POST"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"state\":\"ready\"") != std::string::npos);

    for (const char* bad : {"", "sleep", "Drain", "drain now", "{\"state\":1}", "{\"state\":\"x\"}",
                            "{\"State\":\"drain\"}", "{\"state\":\"drain\"", "{}", "[\"drain\"]",
                            "{\"state\":\"drain\"} x"}) {
      CAPTURE(bad);
      r = call(put("/backends/n1/state", bad));
      CHECK(r.status == 400);
      CHECK(r.body == "{\"error\":\"bad state: expected ready, drain or maint\"}\n");
    }
    r = call(put("/backends/n1/state", "\"maint\""));  // a bare JSON string is fine
    CHECK(r.status == 200);
    CHECK(r.body.find("\"state\":\"maint\"") != std::string::npos);

    r = call(put("/backends/n1/weight", "5"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"weight\":5,") != std::string::npos);
    r = call(put("/backends/n2/weight", "{\"weight\": 1000000}", "", "POST"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"weight\":1000000,\"effective_weight\":1000000") != std::string::npos);
    r = call(put("/backends/n2/weight", "0\n"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"weight\":0,") != std::string::npos);
    for (const char* bad : {"", "-1", "+1", "1000001", "99999999999999999999", "1.5", "1e3", "abc",
                            "07", "{\"weight\":\"5\"}", "{\"weight\":-1}", "{\"weight\":2.0}",
                            "{\"weight\":null}", "{\"w\":5}", "5 6"}) {
      CAPTURE(bad);
      r = call(put("/backends/n1/weight", bad));
      CHECK(r.status == 400);
      CHECK(r.body == "{\"error\":\"bad weight: expected an integer 0..1000000\"}\n");
    }

    r = call(put("/backends/ghost/state", "drain"));
    CHECK(r.status == 404);
    CHECK(r.body == "{\"error\":\"unknown backend\"}\n");
    r = call(put("/backends/ghost/weight", "bad"));  // unknown wins over the bad value
    CHECK(r.status == 404);
    r = call(put("/backends/%zz/weight", "1"));
    CHECK(r.status == 400);

    // Paced eviction: drain, the eviction's JSON; bad windows and unknown backends.
    r = call(put("/backends/odd.name/evict?over=10s", "", "", "POST"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"state\":\"drain\"") != std::string::npos);
    CHECK(r.body.find("\"eviction\":{\"over_ms\":10000,\"elapsed_ms\":0,\"total\":0,"
                      "\"evicted\":0,\"left_on_their_own\":0,\"done\":false,"
                      "\"cancelled\":false}") != std::string::npos);
    r = call(put("/backends/odd.name/evict", "", "", "POST"));
    CHECK(r.status == 200);
    CHECK(r.body.find("\"over_ms\":30000") != std::string::npos);
    r = call(get("/backends"));
    CHECK(r.body.find("\"eviction\"") != std::string::npos);
    r = call(put("/backends/n1/evict?over=soon", "", "", "POST"));
    CHECK(r.status == 400);
    CHECK(r.body.find("bad over") != std::string::npos);
    r = call(put("/backends/ghost/evict?over=10s", "", "", "POST"));
    CHECK(r.status == 404);
    CHECK(r.body == "{\"error\":\"unknown backend\"}\n");
    r = call(get("/backends/n1/evict"));
    CHECK(r.status == 405);
    CHECK(r.header("allow") == "POST");

    // A body larger than 4 KiB: 413, and the connection ends.
    r = call(put("/backends/n1/state", std::string(4097, 'x')));
    CHECK(r.status == 413);
    CHECK(r.header("connection") == "close");
    CHECK(c.closed_by_peer());
  });
  std::string text = log.text();
  CHECK(h.model.find("n1")->state == "maint");
  CHECK(h.model.find("n1")->weight == 5);
  CHECK(h.model.find("n2")->state == "ready");
  CHECK(h.model.find("n2")->weight == 0);
  CHECK(text.find(" info admin set state backend=n1 state=drain client=127.0.0.1\n") !=
        std::string::npos);
  CHECK(text.find(" info admin set state backend=n2 state=maint ") != std::string::npos);
  CHECK(text.find(" info admin set weight backend=n1 weight=5 ") != std::string::npos);
  CHECK(text.find(" info admin set weight backend=n2 weight=1000000 ") != std::string::npos);
  CHECK(text.find("ghost") == std::string::npos);  // only changes are logged
  CHECK(h.model.find("odd.name")->eviction.over_ms == 30000);
  CHECK(h.model.find("n1")->has_eviction == false);
  CHECK(text.find(" info admin evict backend=odd.name over_ms=10000 client=127.0.0.1\n") !=
        std::string::npos);
}

TEST_CASE("admin: bearer token") {
  Harness h("s3cret-token");
  StderrCapture log;
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.connected());

    REQUIRE(c.send(get("/health")));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(r->header("www-authenticate") == "Bearer realm=\"stickyd\"");
    CHECK(r->body == "{\"error\":\"unauthorized\"}\n");

    // 401 keeps the connection.
    for (const char* bad : {"Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer", "Bearer ",
                            "Basic czNjcmV0LXRva2Vu", "s3cret-token", "Bearers3cret-token"}) {
      CAPTURE(bad);
      REQUIRE(c.send(get("/backends", std::string("Authorization: ") + bad + "\r\n")));
      r = c.read();
      REQUIRE(r);
      CHECK(r->status == 401);
      CHECK(r->header("www-authenticate") == "Bearer realm=\"stickyd\", error=\"invalid_token\"");
    }
    // Two Authorization headers, one of them right: refused.
    REQUIRE(c.send(get("/health", "Authorization: Bearer nope\r\nAuthorization: Bearer s3cret-token\r\n")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 401);
    // A state change without the token changes nothing.
    REQUIRE(c.send(put("/backends/n1/state", "maint")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 401);

    REQUIRE(c.send(get("/health", "Authorization: Bearer s3cret-token\r\n")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(c.send(get("/backends/n1", "authorization:   bearer   s3cret-token  \r\n")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(c.send(put("/backends/n1/state", "drain", "Authorization: Bearer s3cret-token\r\n")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    // Even unknown paths need the token first.
    REQUIRE(c.send(get("/nothing")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 401);
    REQUIRE(c.send(get("/nothing", "Authorization: Bearer s3cret-token\r\n")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 404);
  });
  std::string text = log.text();
  CHECK(h.model.find("n1")->state == "drain");
  CHECK(text.find(" warn admin auth failed client=127.0.0.1 reason=missing path=/health\n") !=
        std::string::npos);
  CHECK(text.find(" warn admin auth failed client=127.0.0.1 reason=invalid path=/backends\n") !=
        std::string::npos);
  CHECK(text.find("s3cret") == std::string::npos);  // the token never reaches the log
}

TEST_CASE("admin: keep-alive and pipelining") {
  Harness h;
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.connected());
    REQUIRE(c.send(get("/health")));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(c.send(get("/backends/n1")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);

    // Three requests in one write, answered in order.
    REQUIRE(c.send(get("/backends/n2") + put("/backends/n2/weight", "9") + get("/nothing")));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find("\"weight\":1,") != std::string::npos);
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find("\"weight\":9,") != std::string::npos);
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 404);

    // Requests split in odd places still parse.
    std::string raw = put("/backends/n1/weight", "{\"weight\":3}");
    for (size_t i = 0; i < raw.size(); i += 7) REQUIRE(c.send(raw.substr(i, 7)));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find("\"weight\":3,") != std::string::npos);

    // The client half-closes after its last request: the answer still arrives, then EOF.
    REQUIRE(c.send(get("/health")));
    c.shutdown_write();
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(c.closed_by_peer());
  });
  CHECK(h.model.find("n1")->weight == 3);

  // Many pipelined requests from a client that reads slowly (a tiny receive window): the
  // server stops reading while its answers are backlogged, and every answer still arrives.
  h.run([](int port) {
    Client c(port, 4096);
    REQUIRE(c.connected());
    std::string batch;
    for (int i = 0; i < 300; ++i) batch += get(i % 2 ? "/metrics" : "/backends");
    REQUIRE(c.send(batch));
    int ok = 0;
    for (int i = 0; i < 300; ++i) {
      auto r = c.read();
      if (!r) break;
      ok += r->status == 200 && r->body.rfind(i % 2 ? "# HELP" : "{\"backends\"", 0) == 0;
    }
    CHECK(ok == 300);
  });

  // HTTP/1.0: closed after the answer unless keep-alive was asked for.
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.send("GET /health HTTP/1.0\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("connection") == "close");
    CHECK(c.closed_by_peer());

    Client k(port);
    REQUIRE(k.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    r = k.read();
    REQUIRE(r);
    CHECK(r->header("connection") == "keep-alive");
    REQUIRE(k.send("GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"));
    r = k.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("connection") == "close");
    CHECK(k.closed_by_peer());
  });
}

TEST_CASE("admin: malformed and oversized requests get 4xx and the connection ends") {
  Harness h;
  h.run([](int port) {
    struct Case {
      std::string raw;
      int status;
    };
    std::string chunked_big =
        "PUT /backends/n1/state HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1000\r\n" + std::string(4096, 'x') + "\r\n1\r\nx\r\n0\r\n\r\n";
    for (const Case& k : {
             Case{"GARBAGE\r\n\r\n", 400},
             Case{"GET /health HTTP/9.9\r\n\r\n", 400},
             Case{"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", 400},
             Case{"GET /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", 400},
             Case{"PUT /backends/n1/weight HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413},
             Case{chunked_big, 413},
             Case{"GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n", 414},
             Case{"GET /health HTTP/1.1\r\nX-Big: " + std::string(17000, 'b') + "\r\n\r\n", 431},
             Case{"GET /health HTTP/1.1\r\nAuthorization: " + std::string(5000, 'b') + "\r\n\r\n",
                  431},
             Case{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
         }) {
      CAPTURE(k.raw.substr(0, 60));
      Client c(port);
      REQUIRE(c.connected());
      REQUIRE(c.send(k.raw));
      auto r = c.read();
      REQUIRE(r);
      CHECK(r->status == k.status);
      CHECK(r->header("connection") == "close");
      CHECK(r->header("content-type") == kJsonType);
      CHECK(r->body.rfind("{\"error\":", 0) == 0);
      CHECK(c.closed_by_peer());
    }
    // Binary noise.
    std::string noise;
    for (int i = 0; i < 3000; ++i) noise += static_cast<char>((i * 7919) & 0xff);
    Client c(port);
    REQUIRE(c.send(noise));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(c.closed_by_peer());

    // The server is still fine.
    auto ok = request(port, get("/health"));
    REQUIRE(ok);
    CHECK(ok->status == 200);
  });
  CHECK(h.server->connections() == 0);
}

TEST_CASE("admin: idle connections close, partial requests get 408") {
  Harness h;
  h.server->set_idle_timeout(Millis(100));
  h.run([](int port) {
    Client idle(port);
    REQUIRE(idle.connected());
    Client partial(port);
    REQUIRE(partial.send("GET /heal"));
    Client used(port);
    REQUIRE(used.send(get("/health")));
    auto r = used.read();
    REQUIRE(r);
    CHECK(r->status == 200);

    CHECK(idle.closed_by_peer());
    r = partial.read();
    REQUIRE(r);
    CHECK(r->status == 408);
    CHECK(partial.closed_by_peer());
    CHECK(used.closed_by_peer());
  });
}

// ---------------------------------------------------------------- slow and greedy clients

namespace {

using Clock = std::chrono::steady_clock;

Millis since(Clock::time_point t) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t);
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// One request on `c`: the answer's status, 0 when none came.
int status_of(Client& c, const std::string& raw) {
  if (!c.send(raw)) return 0;
  auto r = c.read();
  return r ? r->status : 0;
}

const std::string kAuth = "Authorization: Bearer s3cret-token\r\n";

void short_deadline(AdminConfig& c) { c.request_timeout = Millis(300); }

}  // namespace

TEST_CASE("admin: a request trickled byte by byte gets 408 at request_timeout") {
  Harness h("", short_deadline);
  StderrCapture log;
  h.run([](int port) {
    Client c(port);
    REQUIRE(c.connected());
    Clock::time_point start = Clock::now();
    // One byte every 10 ms: the whole request would take about 4 s.
    std::string raw = get("/health", "X-Pad: " + std::string(400, 'p') + "\r\n");
    size_t sent = 0;
    while (sent < raw.size() && !c.readable_within(Millis(10))) {
      if (!c.send(raw.substr(sent, 1))) break;
      ++sent;
    }
    auto r = c.read();
    Millis took = since(start);
    REQUIRE(r);
    CHECK(r->status == 408);
    CHECK(r->header("connection") == "close");
    CHECK(r->body == "{\"error\":\"request timeout\"}\n");
    CHECK(c.closed_by_peer());
    CAPTURE(sent);
    CAPTURE(took.count());
    CHECK(sent > 5);               // the bytes kept coming, and did not move the deadline
    CHECK(sent < raw.size());
    CHECK(took >= Millis(250));    // 300 ms from the accept (the loop clock is coarse)
    CHECK(took < Millis(1500));
  });
  CHECK(h.server->connections() == 0);
  CHECK(log.text().find(" warn admin client timeout client=127.0.0.1 timeout_ms=300\n") !=
        std::string::npos);
}

TEST_CASE("admin: idle keep-alive is short until a request carries the token") {
  {
    Harness h("s3cret-token", short_deadline);
    h.run([](int port) {
      Client anon(port), wrong(port), authed(port);
      CHECK(status_of(anon, get("/health")) == 401);
      CHECK(status_of(wrong, get("/health", "Authorization: Bearer wrong-token\r\n")) == 401);
      CHECK(status_of(authed, get("/health", kAuth)) == 200);
      Clock::time_point answered = Clock::now();

      // 401s keep the connection, for request_timeout only.
      for (Client* c : {&anon, &wrong}) {
        CHECK(c->readable_within(Millis(2000)));
        CHECK(c->closed_by_peer());
      }
      CHECK(since(answered) < Millis(1500));
      // The authenticated connection outlives it (the 30 s idle timeout), and every request
      // on it still needs the token.
      CHECK_FALSE(authed.readable_within(Millis(700) - since(answered)));
      CHECK(status_of(authed, get("/backends")) == 401);
      CHECK(status_of(authed, get("/backends", kAuth)) == 200);
    });
  }
  // Without a token no connection is authenticated: request_timeout bounds every wait.
  Harness h("", short_deadline);
  h.run([](int port) {
    Client c(port);
    CHECK(status_of(c, get("/health")) == 200);
    Clock::time_point answered = Clock::now();
    CHECK(c.readable_within(Millis(2000)));
    CHECK(c.closed_by_peer());
    CHECK(since(answered) < Millis(1500));
  });
}

TEST_CASE("admin: connections over max_connections_per_ip are refused, other addresses served") {
  Harness h;  // 8 per address
  StderrCapture log;
  std::vector<std::unique_ptr<Client>> held;
  h.run([&](int port) {
    for (int i = 0; i < 8; ++i) {
      held.push_back(std::make_unique<Client>(port));
      CHECK(status_of(*held.back(), get("/health")) == 200);
    }
    for (int i = 0; i < 5; ++i) {
      Client over(port);
      REQUIRE(over.connected());  // the kernel's handshake; stickyd closes it on accept
      CHECK(over.gone());
    }
    // The operator on another address is served.
    Client op(port, 0, "127.0.0.2");
    CHECK(status_of(op, get("/backends")) == 200);
    CHECK(status_of(op, get("/metrics")) == 200);
    // So are the address's connections already open.
    CHECK(status_of(*held.front(), get("/backends/n1")) == 200);
  });
  CHECK(h.server->connections_from("127.0.0.1") == 8);
  CHECK(h.server->connections_from("127.0.0.2") == 0);  // op closed
  // One of them closes: the address has a place again.
  held.pop_back();
  CHECK(h.run_until([&] { return h.server->connections_from("127.0.0.1") == 7; }));
  h.run([](int port) {
    Client c(port);
    CHECK(status_of(c, get("/health")) == 200);
  });
  std::string text = log.text();
  CHECK(text.find(" warn admin connection refused client=127.0.0.1 "
                  "reason=\"too many connections from this address\" refused_total=1\n") !=
        std::string::npos);
  CHECK(count_of(text, "admin connection refused") < 5);  // at most one line a second
}

TEST_CASE("admin: 64 idle unauthenticated connections do not lock the operator out") {
  Harness h("s3cret-token", short_deadline);
  h.run([](int port) {
    Clock::time_point start = Clock::now();
    std::vector<std::unique_ptr<Client>> attackers;
    for (int i = 0; i < 64; ++i) {
      attackers.push_back(std::make_unique<Client>(port));
      REQUIRE(attackers.back()->connected());
    }
    // From another address, the operator is answered at once.
    {
      Clock::time_point asked = Clock::now();
      Client op(port, 0, "127.0.0.2");
      CHECK(status_of(op, get("/backends", kAuth)) == 200);
      CHECK(since(asked) < Millis(250));  // well before the attackers' deadline
    }
    // Every attacker is gone: the first 8 at their deadline, the rest on accept.
    for (auto& a : attackers) CHECK(a->gone());
    CHECK(since(start) < Millis(1500));
    // Then from the attackers' address too.
    Client op(port);
    CHECK(status_of(op, get("/backends", kAuth)) == 200);
    CHECK(status_of(op, get("/metrics", kAuth)) == 200);
  });
}

TEST_CASE("admin: 64 idle connections from 8 addresses: the oldest makes room for the operator") {
  Harness h("s3cret-token", short_deadline);
  StderrCapture log;
  h.run([](int port) {
    std::vector<std::unique_ptr<Client>> attackers;
    for (int i = 0; i < 64; ++i) {
      std::string from = "127.0.0." + std::to_string(1 + i % 8);
      attackers.push_back(std::make_unique<Client>(port, 0, from.c_str()));
      REQUIRE(attackers.back()->connected());
    }
    // All 64 places are taken by connections that never authenticated: the oldest one makes
    // room, and the operator is served at once (well before the attackers' deadline).
    Clock::time_point asked = Clock::now();
    Client op(port, 0, "127.0.0.9");
    CHECK(status_of(op, get("/backends", kAuth)) == 200);
    CHECK(since(asked) < Millis(250));
    CHECK(attackers.front()->gone());
    // The operator's connection authenticated: later newcomers evict attackers, not it.
    std::vector<std::unique_ptr<Client>> more;
    for (int i = 0; i < 8; ++i) {
      more.push_back(std::make_unique<Client>(port, 0, "127.0.0.10"));
      REQUIRE(more.back()->connected());
    }
    CHECK(status_of(*more.back(), get("/health", kAuth)) == 200);
    for (size_t i = 1; i <= 8; ++i) CHECK(attackers[i]->gone());  // the next 8 oldest
    CHECK(status_of(op, get("/metrics", kAuth)) == 200);
  });
  CHECK(log.text().find(" warn admin connection evicted: every place taken client=127.0.0.1 "
                        "evicted_total=1\n") != std::string::npos);
}

TEST_CASE("admin: 100-continue, and stop() closes open connections") {
  Harness h;
  std::unique_ptr<Client> kept;
  h.run([&](int port) {
    Client c(port);
    REQUIRE(c.send("PUT /backends/n1/weight HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                   "Expect: 100-continue\r\n\r\n"));
    auto r = c.read(false, false);  // the interim answer comes before the body is sent
    REQUIRE(r);
    CHECK(r->status == 100);
    REQUIRE(c.send("42"));
    r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find("\"weight\":42,") != std::string::npos);

    kept = std::make_unique<Client>(port);
    REQUIRE(kept->send(get("/health")));
    r = kept->read();
    REQUIRE(r);
    CHECK(r->status == 200);
  });
  CHECK(h.server->connections() == 1);
  h.server->stop();
  CHECK(h.run_until([&] { return h.server->connections() == 0; }));
  CHECK(kept->closed_by_peer());
  CHECK(request(h.port, get("/health")) == std::nullopt);  // listener gone
}

TEST_CASE("admin: destroying the server with open connections is safe") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeModel model;
  AdminConfig cfg;
  REQUIRE_FALSE(parse_socket_address("127.0.0.1:0", cfg.listen, true).has_value());
  auto server = std::make_unique<AdminServer>(&loop, cfg, model);
  REQUIRE(server->start() == 0);
  int port = std::atoi(server->bound_address().c_str() + 10);
  Client a(port), b(port);
  REQUIRE(a.connected());
  REQUIRE(b.connected());
  REQUIRE(a.send("GET /hea"));
  // Accept both and read the partial request, bounded.
  bool timed_out = false;
  uv_timer_t deadline;
  uv_timer_init(&loop, &deadline);
  deadline.data = &timed_out;
  uv_timer_start(&deadline, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, 2000, 0);
  while (server->connections() < 2 && !timed_out) uv_run(&loop, UV_RUN_ONCE);
  CHECK_FALSE(timed_out);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
  server.reset();                 // connections orphaned, still closing
  uv_run(&loop, UV_RUN_DEFAULT);  // they free themselves
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(a.gone());
  CHECK(b.gone());
}

TEST_CASE("admin: a port in use is reported") {
  Harness h;
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeModel model;
  AdminConfig cfg;
  REQUIRE_FALSE(parse_socket_address("127.0.0.1:" + std::to_string(h.port), cfg.listen, false)
                    .has_value());
  {
    AdminServer second(&loop, cfg, model);
    CHECK(second.start() == UV_EADDRINUSE);
    CHECK(second.bound_address() == "");
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(to_string(AdminState::Drain) == std::string("drain"));
  CHECK(parse_admin_state("maint") == AdminState::Maint);
  CHECK_FALSE(parse_admin_state("MAINT"));
}

TEST_CASE("admin: the evict window comes from ?over=, in the config's duration syntax") {
  CHECK(parse_evict_over("") == kDefaultEvictOver);
  CHECK(parse_evict_over("x=1") == kDefaultEvictOver);
  CHECK(parse_evict_over("over=30s") == Millis(30000));
  CHECK(parse_evict_over("a=b&over=500ms") == Millis(500));
  CHECK(parse_evict_over("over=2m") == Millis(120000));
  CHECK(parse_evict_over("over=1.5s") == Millis(1500));
  CHECK(parse_evict_over("over=10") == Millis(10000));  // bare seconds
  CHECK(parse_evict_over("over=0s") == Millis(0));
  CHECK(parse_evict_over("over=1d") == kMaxEvictOver);
  CHECK(parse_evict_over("over=1s&over=3s") == Millis(3000));  // the last one, like query_param
  CHECK(parse_evict_over("over=%33%30s") == Millis(30000));  // percent-decoded
  for (const char* bad : {"over=", "over=-1s", "over=abc", "over=30x", "over=2d", "over=1e3",
                          "over=30 s", "over"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_evict_over(bad));
  }
}
