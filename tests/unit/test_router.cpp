#include <doctest/doctest.h>

#include "stickyd/router.hpp"

using namespace stickyd;

namespace {
Config three_backends() {
  ConfigResult r = load_config_string(
      "listen: 127.0.0.1:0\n"
      "backends:\n"
      "  - {name: n1, address: 127.0.0.1:3001}\n"
      "  - {name: n2, address: 127.0.0.1:3002}\n"
      "  - {name: n3, address: 127.0.0.1:3003}\n",
      "test.yaml");
  REQUIRE(r.config);
  return *r.config;
}
}  // namespace

TEST_CASE("router: handshakes are balanced, then their sid routes to the learning node") {
  Config cfg = three_backends();
  Router r(cfg);
  Route a = r.route("/socket.io/?EIO=4&transport=polling", "", 0);
  Route b = r.route("/socket.io/?EIO=4&transport=polling&t=x", "", 0);
  CHECK(a.handshake);
  CHECK(a.via == RouteVia::Balance);
  CHECK(a.backend != b.backend);
  OpenPacket open;
  open.sid = "abc";
  open.ping_interval_ms = 2000;
  open.ping_timeout_ms = 2000;
  r.learn("abc", b.backend, &open, 0);
  for (int i = 0; i < 5; ++i) {
    Route x = r.route("/socket.io/?EIO=4&transport=polling&sid=abc", "", 100);
    CHECK(x.backend == b.backend);
    CHECK(x.via == RouteVia::Table);
    CHECK(x.source == KeySource::Query);
    CHECK_FALSE(x.handshake);
  }
  // Idle time derived from the open packet: 2 x (2000 + 2000).
  CHECK(r.route("/socket.io/?sid=abc", "", 8099).via == RouteVia::Table);
  CHECK(r.route("/socket.io/?sid=abc", "", 24099).via == RouteVia::UnknownKey);
}

TEST_CASE("router: the cookie is the key when there is no sid, on any path") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("s1", 2, nullptr, 0);
  Route x = r.route("/whoami", "a=b; io=s1", 0);
  CHECK(x.backend == 2);
  CHECK(x.source == KeySource::Cookie);
  CHECK_FALSE(x.engineio);
  // The sid parameter wins over the cookie on the Engine.IO path...
  r.learn("s2", 1, nullptr, 0);
  CHECK(r.route("/socket.io/?EIO=4&sid=s2", "io=s1", 0).backend == 1);
  // ...and is ignored elsewhere.
  CHECK(r.route("/other?sid=s2", "io=s1", 0).backend == 2);
  // A handshake that still carries an old cookie goes where the cookie says.
  Route h = r.route("/socket.io/?EIO=4&transport=polling", "io=s1", 0);
  CHECK(h.handshake);
  CHECK(h.backend == 2);
}

TEST_CASE("router: an empty sid is a handshake; an unknown key is balanced") {
  Config cfg = three_backends();
  Router r(cfg);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&sid=", "", 0).handshake);
  Route u = r.route("/socket.io/?EIO=4&transport=polling&sid=nope", "", 0);
  CHECK_FALSE(u.handshake);
  CHECK(u.via == RouteVia::UnknownKey);
  CHECK(u.backend >= 0);
}

TEST_CASE("router: percent-encoded sids are decoded like engine.io does") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("a-b_c", 1, nullptr, 0);
  CHECK(r.route("/socket.io/?EIO=4&sid=a%2Db%5Fc", "", 0).backend == 1);
  CHECK(r.route("/socket.io/?EIO=4&s%69d=a-b_c", "", 0).backend == 1);
}

TEST_CASE("router: a backend that failed to connect gets no new sessions for a while") {
  Config cfg = three_backends();
  Router r(cfg);
  r.connect_failed(0, 1000);
  for (int i = 0; i < 6; ++i) CHECK(r.route("/socket.io/?EIO=4", "", 1500).backend != 0);
  r.connect_succeeded(0);
  bool saw0 = false;
  for (int i = 0; i < 3; ++i) saw0 |= r.route("/socket.io/?EIO=4", "", 1500).backend == 0;
  CHECK(saw0);
}
