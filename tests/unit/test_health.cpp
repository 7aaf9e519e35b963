// Health checker against real sockets on 127.0.0.1: small HTTP servers run inside the same
// uv loop; every wait runs the loop until a condition holds, bounded by a guard timer.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "stickyd/health.hpp"
#include "stickyd/net.hpp"
#include "loopback.hpp"

using namespace stickyd;

namespace {

struct Loop {
  uv_loop_t loop;
  uv_timer_t guard;
  bool expired = false;

  Loop() {
    uv_loop_init(&loop);
    uv_timer_init(&loop, &guard);
    guard.data = this;
  }

  uint64_t now() {
    uv_update_time(&loop);
    return uv_now(&loop);
  }

  // Runs the loop until pred() holds or `limit_ms` passed; returns pred().
  template <typename P>
  bool run_until(P pred, uint64_t limit_ms = 1000) {
    expired = false;
    uv_ref(reinterpret_cast<uv_handle_t*>(&guard));
    uv_timer_start(&guard, [](uv_timer_t* t) { static_cast<Loop*>(t->data)->expired = true; },
                   limit_ms, 0);
    while (!pred() && !expired) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    return pred();
  }

  // Runs until no handle is left (bounded), then closes the loop: 0 iff nothing leaked.
  int finish() {
    uv_unref(reinterpret_cast<uv_handle_t*>(&guard));  // must not keep the loop alive itself
    uv_timer_start(&guard, [](uv_timer_t* t) { uv_stop(t->loop); }, 1000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    return uv_loop_close(&loop);
  }
};

enum class Mode { Status, Silent, CloseAtOnce, Garbage, HeadOnly };

class TestServer;

class ServerConn final : public Socket {
 public:
  ServerConn(uv_loop_t* loop, TestServer* srv) : Socket(loop), srv_(srv) {}

 protected:
  void on_read(const char* data, size_t len) override;
  void on_eof() override { close(); }
  void on_read_error(int) override { close(); }
  void on_write_error(int) override { close(); }
  void on_deadline() override {}
  void on_closed() override;

 private:
  TestServer* srv_;
  std::string buf_;
  bool answered_ = false;
};

class TestServer {
 public:
  TestServer(uv_loop_t* loop, Mode mode, int status = 200)
      : mode(mode),
        status(status),
        loop_(loop),
        listener_(loop, any_port(), [this](uv_stream_t* s) { accept(s); }) {
    REQUIRE(listener_.start() == 0);
    address = listener_.bound_address();
  }

  void close() {
    listener_.close();
    std::set<ServerConn*> copy = conns;
    for (ServerConn* c : copy) c->close();
  }

  Mode mode;
  int status;
  std::string address;
  std::string last_request;
  std::map<int, int> served;     // status -> responses sent
  int requests = 0;
  size_t max_concurrent = 0;
  std::vector<uint64_t> accepted_at;  // loop time of each accepted connection
  std::set<ServerConn*> conns;

 private:
  static SocketAddress any_port() {
    SocketAddress a;
    REQUIRE_FALSE(parse_socket_address("127.0.0.1:0", a, true));
    return a;
  }

  void accept(uv_stream_t* server) {
    auto* c = new ServerConn(loop_, this);
    conns.insert(c);
    if (uv_accept(server, c->stream()) != 0) {
      c->close();
      return;
    }
    accepted_at.push_back(uv_now(loop_));
    max_concurrent = std::max(max_concurrent, conns.size());
    if (mode == Mode::CloseAtOnce) {
      c->close();
      return;
    }
    c->start_reading();
  }

  uv_loop_t* loop_;
  Listener listener_;
};

void ServerConn::on_read(const char* data, size_t len) {
  if (answered_) return;
  buf_.append(data, len);
  if (buf_.find("\r\n\r\n") == std::string::npos) return;
  answered_ = true;
  srv_->last_request = buf_;
  ++srv_->requests;
  switch (srv_->mode) {
    case Mode::Status: {
      int st = srv_->status;
      ++srv_->served[st];
      send("HTTP/1.1 " + std::to_string(st) + " X\r\nContent-Length: 2\r\n\r\nok");
      break;
    }
    case Mode::HeadOnly:  // a head announcing a body that never comes
      send("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
      break;
    case Mode::Garbage:
      send("SPDY/9 what\r\n\r\n");
      break;
    case Mode::Silent:
    case Mode::CloseAtOnce:
      break;
  }
  // Then wait for the checker to close its side.
}

void ServerConn::on_closed() {
  srv_->conns.erase(this);
  delete this;
}

// A port bound but not listening: connecting to it is refused, and nobody else can take it
// while the test runs.
struct RefusedPort {
  int fd = -1;
  std::string address;
  RefusedPort() {
    sockaddr_in a;
    fd = test::bound_loopback_socket(a);
    address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  }
  ~RefusedPort() { ::close(fd); }
};

Config make_config(const std::vector<std::string>& addresses) {
  Config c;
  for (size_t i = 0; i < addresses.size(); ++i) {
    BackendConfig b;
    b.name = "n" + std::to_string(i + 1);
    b.cookie = b.name;
    REQUIRE_FALSE(parse_socket_address(addresses[i], b.address, false));
    c.backends.push_back(b);
  }
  c.health.enabled = true;
  c.health.interval = Millis(20);
  c.health.timeout = Millis(200);
  c.health.rise = 2;
  c.health.fall = 2;
  c.health.passive_fall = 3;
  return c;
}

struct Event {
  int backend;
  Health state;
  std::string reason;
  uint64_t checks;  // checks_run(backend) when it happened
};

struct Recorder {
  std::vector<Event> events;
  HealthChecker* checker = nullptr;
  std::function<void(const Event&)> also;

  HealthChecker::ChangeFn fn() {
    return [this](int b, Health h, const std::string& reason) {
      events.push_back({b, h, reason, checker ? checker->checks_run(b) : 0});
      if (also) also(events.back());
    };
  }
  size_t count(int backend, Health h) const {
    size_t n = 0;
    for (const Event& e : events) n += e.backend == backend && e.state == h;
    return n;
  }
};

}  // namespace

TEST_CASE("health: Unchecked -> Up on the first success, with the default handshake request") {
  Loop L;
  TestServer srv(&L.loop, Mode::Status, 200);
  Config cfg = make_config({srv.address});
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  rec.checker = &hc;
  CHECK(hc.request_target() == "/socket.io/?EIO=4&transport=polling");
  hc.start();
  CHECK(hc.state(0) == Health::Unchecked);
  CHECK(hc.usable(0));
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  REQUIRE(rec.events.size() == 1);
  CHECK(rec.events[0].backend == 0);
  CHECK(rec.events[0].reason == "status 200");
  CHECK(rec.events[0].checks == 1);  // the first success counts, whatever `rise` says
  CHECK(srv.last_request == "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: " +
                                srv.address +
                                "\r\nUser-Agent: stickyd-health\r\nConnection: close\r\n\r\n");
  // One check per interval keeps running; nothing else changes.
  REQUIRE(L.run_until([&] { return hc.checks_run(0) >= 4; }));
  CHECK(rec.events.size() == 1);
  CHECK(srv.max_concurrent == 1);
  hc.stop();
  srv.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: `fall` failures take it down, `rise` successes bring it back") {
  Loop L;
  TestServer srv(&L.loop, Mode::Status, 500);
  Config cfg = make_config({srv.address});
  cfg.health.rise = 3;
  cfg.health.fall = 3;
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  rec.checker = &hc;
  int served_at_event = -1;
  // Flip the server at each transition, from inside the callback: the counts are then exact.
  rec.also = [&](const Event& e) {
    int st = srv.status;
    served_at_event = srv.served[st];
    srv.status = e.state == Health::Down ? 200 : 500;
    srv.served.clear();
  };
  hc.start();
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Down; }));
  REQUIRE(rec.events.size() == 1);
  CHECK(rec.events[0].checks == 3);  // Unchecked -> Down after `fall` failures
  CHECK(served_at_event == 3);
  CHECK(rec.events[0].reason == "status 500 (expected 200)");
  CHECK(hc.last_reason(0) == "status 500 (expected 200)");
  CHECK_FALSE(hc.usable(0));

  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  REQUIRE(rec.events.size() == 2);
  CHECK(served_at_event == 3);  // recovery after exactly `rise` consecutive successes
  CHECK(rec.events[1].checks == 6);

  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Down; }));
  REQUIRE(rec.events.size() == 3);
  CHECK(served_at_event == 3);  // Up -> Down after `fall` failures
  hc.stop();
  srv.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: expect_status, method and path") {
  Loop L;
  TestServer ok200(&L.loop, Mode::Status, 200);
  TestServer redirect(&L.loop, Mode::Status, 302);
  TestServer missing(&L.loop, Mode::Status, 404);
  Config cfg = make_config({ok200.address, redirect.address, missing.address});
  cfg.health.fall = 1;
  cfg.health.method = "HEAD";
  cfg.health.path = "/health";

  SUBCASE("a status other than expect_status is a failure") {
    cfg.health.expect_status = 204;
    Recorder rec;
    HealthChecker hc(&L.loop, cfg, rec.fn());
    hc.start();
    REQUIRE(L.run_until([&] {
      return hc.state(0) == Health::Down && hc.state(1) == Health::Down &&
             hc.state(2) == Health::Down;
    }));
    CHECK(hc.last_reason(0) == "status 200 (expected 204)");
    CHECK(hc.last_reason(1) == "status 302 (expected 204)");
    CHECK(ok200.last_request.rfind("HEAD /health HTTP/1.1\r\nHost: " + ok200.address + "\r\n",
                                   0) == 0);
    hc.stop();
  }
  SUBCASE("expect_status 0 accepts any 2xx/3xx") {
    cfg.health.expect_status = 0;
    Recorder rec;
    HealthChecker hc(&L.loop, cfg, rec.fn());
    hc.start();
    REQUIRE(L.run_until([&] {
      return hc.state(0) == Health::Up && hc.state(1) == Health::Up &&
             hc.state(2) == Health::Down;
    }));
    CHECK(hc.last_reason(2) == "status 404 (expected 2xx/3xx)");
    hc.stop();
  }
  ok200.close();
  redirect.close();
  missing.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: timeout, refused port, immediate close and garbage are failures") {
  Loop L;
  TestServer silent(&L.loop, Mode::Silent);
  RefusedPort refused;
  TestServer closer(&L.loop, Mode::CloseAtOnce);
  TestServer garbage(&L.loop, Mode::Garbage);
  Config cfg = make_config({silent.address, refused.address, closer.address, garbage.address});
  cfg.health.fall = 1;
  cfg.health.interval = Millis(50);
  cfg.health.timeout = Millis(40);
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  rec.checker = &hc;
  uint64_t t0 = L.now();
  hc.start();
  REQUIRE(L.run_until([&] {
    for (int i = 0; i < 4; ++i)
      if (hc.state(i) != Health::Down) return false;
    return true;
  }));
  CHECK(hc.last_reason(0) == "timeout: no response head within 40ms");
  CHECK(L.now() - t0 >= 40);
  CHECK(hc.last_reason(1) == "connect: connection refused");
  const std::string& r2 = hc.last_reason(2);
  CHECK((r2 == "connection closed before response head" || r2.rfind("read: ", 0) == 0 ||
         r2.rfind("write: ", 0) == 0));
  CHECK(hc.last_reason(3).rfind("invalid response: ", 0) == 0);
  for (const Event& e : rec.events) CHECK(e.checks == 1);  // fall = 1
  hc.stop();
  silent.close();
  closer.close();
  garbage.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: a timeout longer than the interval never overlaps checks") {
  Loop L;
  TestServer silent(&L.loop, Mode::Silent);
  Config cfg = make_config({silent.address});
  cfg.health.interval = Millis(10);
  cfg.health.timeout = Millis(30);
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  hc.start();
  REQUIRE(L.run_until([&] { return hc.checks_run(0) >= 4; }));
  CHECK(hc.state(0) == Health::Down);
  // Each check waits for the previous one to time out before connecting. (The server may
  // accept the next connection before it reads the previous one's end, so it can't count
  // concurrent connections; the spacing of its accepts shows the overlap instead.)
  REQUIRE(silent.accepted_at.size() >= 3);
  for (size_t i = 1; i < silent.accepted_at.size(); ++i)
    CHECK(silent.accepted_at[i] - silent.accepted_at[i - 1] >= 25);
  CHECK(rec.events.size() == 1);
  hc.stop();
  silent.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: the body is not awaited, the connection is closed after the head") {
  Loop L;
  TestServer srv(&L.loop, Mode::HeadOnly);
  Config cfg = make_config({srv.address});
  cfg.health.interval = Millis(500);  // a single check in this test
  cfg.health.timeout = Millis(300);
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  hc.start();
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  CHECK(hc.checks_run(0) == 1);
  // The server sees the checker hang up although 100000 body bytes are still due.
  REQUIRE(L.run_until([&] { return srv.requests == 1 && srv.conns.empty(); }, 200));
  hc.stop();
  srv.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: first checks are spread over the first interval") {
  Loop L;
  std::vector<std::unique_ptr<TestServer>> servers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 4; ++i) {
    servers.push_back(std::make_unique<TestServer>(&L.loop, Mode::Status, 200));
    addresses.push_back(servers.back()->address);
  }
  Config cfg = make_config(addresses);
  cfg.health.interval = Millis(200);
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  uint64_t t0 = L.now();
  hc.start();
  REQUIRE(L.run_until([&] {
    for (auto& s : servers)
      if (s->accepted_at.empty()) return false;
    return true;
  }));
  for (int i = 0; i < 4; ++i) {
    uint64_t at = servers[static_cast<size_t>(i)]->accepted_at[0] - t0;
    CAPTURE(i);
    CAPTURE(at);
    CHECK(at >= static_cast<uint64_t>(i) * 50);  // slot i of 4 over 200 ms
    CHECK(at < static_cast<uint64_t>(i + 1) * 50 + 40);
  }
  hc.stop();
  for (auto& s : servers) s->close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: passive_fall from real traffic, active checks bring it back") {
  Loop L;
  TestServer srv(&L.loop, Mode::Status, 200);
  Config cfg = make_config({srv.address});
  cfg.health.passive_fall = 3;
  cfg.health.rise = 2;
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  rec.checker = &hc;
  hc.start();
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  hc.report_traffic(0, false);
  hc.report_traffic(0, false);
  hc.report_traffic(0, true);  // a success resets the count
  hc.report_traffic(0, false);
  hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Up);
  hc.report_traffic(0, false);  // third in a row: down at once
  CHECK(hc.state(0) == Health::Down);
  REQUIRE(rec.events.size() == 2);
  CHECK(rec.events[1].reason == "passive: 3 consecutive traffic failures");
  uint64_t checks_at_down = rec.events[1].checks;
  hc.report_traffic(0, false);  // already down: nothing more
  CHECK(rec.events.size() == 2);
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  REQUIRE(rec.events.size() == 3);
  CHECK(rec.events[2].checks - checks_at_down == 2);  // `rise` fresh successes
  hc.stop();
  srv.close();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: active checks off: passive marking with a retry-after window") {
  Loop L;
  RefusedPort refused;
  Config cfg = make_config({refused.address});
  cfg.health.enabled = false;
  cfg.health.interval = Millis(30);
  cfg.health.passive_fall = 2;
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  hc.start();
  CHECK_FALSE(uv_loop_alive(&L.loop));  // start() armed nothing
  CHECK(hc.checks_run(0) == 0);

  hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Unchecked);
  uint64_t t_down = uv_now(&L.loop);  // loop time, the base the window's timer starts from
  hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Down);
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  CHECK(L.now() - t_down >= 30);
  CHECK(hc.last_reason(0) == "retry after 30ms");

  // On probation: the first failure takes it down again for another window.
  hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Down);
  CHECK(hc.last_reason(0) == "passive: traffic failure during retry");
  REQUIRE(L.run_until([&] { return hc.state(0) == Health::Up; }));
  // A success ends the probation: `passive_fall` failures are needed again.
  hc.report_traffic(0, true);
  hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Up);
  hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Down);
  CHECK(hc.checks_run(0) == 0);
  CHECK(rec.events.size() == 5);

  hc.stop();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: passive_fall 0 turns passive marking off") {
  Loop L;
  Config cfg = make_config({"127.0.0.1:1"});
  cfg.health.enabled = false;
  cfg.health.passive_fall = 0;
  Recorder rec;
  HealthChecker hc(&L.loop, cfg, rec.fn());
  hc.start();
  for (int i = 0; i < 20; ++i) hc.report_traffic(0, false);
  CHECK(hc.state(0) == Health::Unchecked);
  CHECK(rec.events.empty());
  hc.stop();
  CHECK(L.finish() == 0);
}

TEST_CASE("health: stop() closes every handle and silences callbacks") {
  Loop L;
  TestServer silent1(&L.loop, Mode::Silent);
  TestServer silent2(&L.loop, Mode::Silent);
  TestServer ok(&L.loop, Mode::Status, 200);
  Config cfg = make_config({silent1.address, silent2.address, ok.address});
  cfg.health.timeout = Millis(1000);
  cfg.health.fall = 1;

  SUBCASE("with checks in flight, destroyed right after stop()") {
    Recorder rec;
    auto hc = std::make_unique<HealthChecker>(&L.loop, cfg, rec.fn());
    hc->start();
    // Both silent servers hold a check connection open; the third backend is up.
    REQUIRE(L.run_until([&] {
      return silent1.conns.size() == 1 && silent2.conns.size() == 1 && hc->state(2) == Health::Up;
    }));
    size_t events = rec.events.size();
    hc->stop();
    hc->report_traffic(2, false);
    hc->report_traffic(2, false);
    hc->report_traffic(2, false);
    CHECK(hc->state(2) == Health::Up);
    hc.reset();  // the closing handles free themselves later
    silent1.close();
    silent2.close();
    ok.close();
    CHECK(L.finish() == 0);
    CHECK(rec.events.size() == events);
  }
  SUBCASE("stop() from inside on_change") {
    Recorder rec;
    HealthChecker hc(&L.loop, cfg, rec.fn());
    rec.also = [&](const Event&) { hc.stop(); };
    hc.start();
    REQUIRE(L.run_until([&] { return !rec.events.empty(); }));
    CHECK(rec.events.size() == 1);
    silent1.close();
    silent2.close();
    ok.close();
    CHECK(L.finish() == 0);
    CHECK(rec.events.size() == 1);
  }
}
