#include <doctest/doctest.h>

#include "stickyd/router.hpp"
#include "stickyd/admin.hpp"

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
  Route a = r.route("/socket.io/?EIO=4&transport=polling", "", 0, 0);
  Route b = r.route("/socket.io/?EIO=4&transport=polling&t=x", "", 0, 0);
  CHECK(a.handshake);
  CHECK(a.via == RouteVia::Balance);
  CHECK(a.backend != b.backend);
  OpenPacket open;
  open.sid = "abc";
  open.ping_interval_ms = 2000;
  open.ping_timeout_ms = 2000;
  r.learn("abc", b.backend, &open, 0);
  for (int i = 0; i < 5; ++i) {
    Route x = r.route("/socket.io/?EIO=4&transport=polling&sid=abc", "", 0, 100);
    CHECK(x.backend == b.backend);
    CHECK(x.via == RouteVia::Table);
    CHECK(x.source == KeySource::Query);
    CHECK_FALSE(x.handshake);
  }
  // Idle time derived from the open packet: 2 x (2000 + 2000).
  CHECK(r.route("/socket.io/?sid=abc", "", 0, 8099).via == RouteVia::Table);
  CHECK(r.route("/socket.io/?sid=abc", "", 0, 24099).via == RouteVia::UnknownKey);
}

TEST_CASE("router: the cookie is the key when there is no sid, on any path") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("s1", 2, nullptr, 0);
  Route x = r.route("/whoami", "a=b; io=s1", 0, 0);
  CHECK(x.backend == 2);
  CHECK(x.source == KeySource::Cookie);
  CHECK_FALSE(x.engineio);
  // The sid parameter wins over the cookie on the Engine.IO path...
  r.learn("s2", 1, nullptr, 0);
  CHECK(r.route("/socket.io/?EIO=4&sid=s2", "io=s1", 0, 0).backend == 1);
  // ...and is ignored elsewhere.
  CHECK(r.route("/other?sid=s2", "io=s1", 0, 0).backend == 2);
  // A handshake that still carries an old cookie goes where the cookie says.
  Route h = r.route("/socket.io/?EIO=4&transport=polling", "io=s1", 0, 0);
  CHECK(h.handshake);
  CHECK(h.backend == 2);
}

TEST_CASE("router: an empty sid is a handshake; an unknown key is balanced") {
  Config cfg = three_backends();
  Router r(cfg);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&sid=", "", 0, 0).handshake);
  Route u = r.route("/socket.io/?EIO=4&transport=polling&sid=nope", "", 0, 0);
  CHECK_FALSE(u.handshake);
  CHECK(u.via == RouteVia::UnknownKey);
  CHECK(u.backend >= 0);
}

TEST_CASE("router: percent-encoded sids are decoded like engine.io does") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("a-b_c", 1, nullptr, 0);
  CHECK(r.route("/socket.io/?EIO=4&sid=a%2Db%5Fc", "", 0, 0).backend == 1);
  CHECK(r.route("/socket.io/?EIO=4&s%69d=a-b_c", "", 0, 0).backend == 1);
}

TEST_CASE("router: a backend marked down gets no new sessions; weight 0 neither") {
  Config cfg = three_backends();
  Router r(cfg);
  r.set_health(0, Health::Down, 1000);
  r.set_weight(1, 0);
  for (int i = 0; i < 6; ++i) CHECK(r.route("/socket.io/?EIO=4", "", 0, 1500).backend == 2);
  r.set_health(0, Health::Up, 2000);
  bool saw0 = false;
  for (int i = 0; i < 3; ++i) saw0 |= r.route("/socket.io/?EIO=4", "", 0, 2500).backend == 0;
  CHECK(saw0);
  r.set_health(0, Health::Down, 3000);
  r.set_health(2, Health::Down, 3000);
  Route none = r.route("/socket.io/?EIO=4", "", 0, 3500);
  CHECK(none.backend == -1);
  CHECK(none.local_status == 503);
}

TEST_CASE("router: a session whose node is down gets Engine.IO's 400 at once, or 503 when strict") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("s1", 1, nullptr, 0);
  r.set_health(1, Health::Down, 10);
  Route x = r.route("/socket.io/?EIO=4&transport=polling&sid=s1", "", 0, 20);
  CHECK(x.backend == -1);
  CHECK(x.local_status == 400);
  // Without a sid (cookie only), the request is redispatched to a live node.
  Route y = r.route("/whoami", "io=s1", 0, 20);
  CHECK(y.backend >= 0);
  CHECK(y.backend != 1);
  CHECK(y.via == RouteVia::Redispatch);
  // Maintenance counts as gone; drain does not.
  r.set_health(1, Health::Up, 30);
  r.set_admin_state(1, AdminState::Drain);
  CHECK(r.route("/socket.io/?EIO=4&sid=s1", "", 0, 40).backend == 1);
  r.set_admin_state(1, AdminState::Maint);
  CHECK(r.route("/socket.io/?EIO=4&sid=s1", "", 0, 50).local_status == 400);
  cfg.sticky.strict = true;
  Router strict(cfg);
  strict.learn("s2", 0, nullptr, 0);
  strict.set_admin_state(0, AdminState::Maint);
  CHECK(strict.route("/socket.io/?EIO=4&sid=s2", "", 0, 10).local_status == 503);
}

TEST_CASE("router: drained backends take no new sessions but keep their own") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("mine", 0, nullptr, 0);
  r.set_admin_state(0, AdminState::Drain);
  for (int i = 0; i < 6; ++i) CHECK(r.route("/socket.io/?EIO=4", "", 0, 1).backend != 0);
  CHECK(r.route("/socket.io/?EIO=4&sid=mine", "", 0, 1).backend == 0);
}

TEST_CASE("router: proxy-tagged sids route with no table and are stripped") {
  Config cfg = three_backends();
  cfg.sticky.tag.enabled = true;
  Router r(cfg);
  Route x = r.route("/socket.io/?EIO=4&transport=polling&sid=n3.abcDEF", "", 0, 0);
  CHECK(x.backend == 2);
  CHECK(x.via == RouteVia::Tag);
  CHECK(x.key == "abcDEF");
  CHECK(x.strip_tag);
  // Tag in the io cookie on another path.
  Route y = r.route("/whoami", "io=n2.zz", 0, 0);
  CHECK(y.backend == 1);
  CHECK(y.key == "zz");
  // An unknown tag is just an unknown sid.
  Route z = r.route("/socket.io/?EIO=4&sid=nX.abc", "", 0, 0);
  CHECK(z.via == RouteVia::UnknownKey);
  CHECK_FALSE(z.strip_tag);
  CHECK(r.persistence().tag(0, "abc") == "n1.abc");
}

TEST_CASE("router: backend-made tags route but stay in the sid") {
  Config cfg = three_backends();
  cfg.sticky.tag.accept_backend_tags = true;
  Router r(cfg);
  Route x = r.route("/socket.io/?EIO=4&sid=n2.abc", "", 0, 0);
  CHECK(x.backend == 1);
  CHECK(x.key == "n2.abc");
  CHECK_FALSE(x.strip_tag);
}

TEST_CASE("router: HAProxy server cookies route, aliases too, with indirect stripping") {
  Config cfg = three_backends();
  cfg.backends[2].cookie_aliases = {"old-s3"};
  cfg.sticky.server_cookie.enabled = true;
  cfg.sticky.server_cookie.indirect = true;
  Router r(cfg);
  Route x = r.route("/whoami", "SERVERID=n2", 0, 0);
  CHECK(x.backend == 1);
  CHECK(x.via == RouteVia::ServerCookie);
  CHECK(x.server_cookie_ok);
  CHECK(x.strip_server_cookie);
  CHECK(r.route("/whoami", "a=b; SERVERID=old-s3", 0, 0).backend == 2);
  // HAProxy's date suffix is accepted.
  CHECK(r.route("/whoami", "SERVERID=n1|awn7c|awn7c", 0, 0).backend == 0);
  // A sid the table knows wins over the cookie.
  r.learn("s", 2, nullptr, 0);
  Route y = r.route("/socket.io/?EIO=4&sid=s", "SERVERID=n1", 0, 0);
  CHECK(y.backend == 2);
  CHECK_FALSE(y.server_cookie_ok);  // the client's cookie names another node: re-insert
}

TEST_CASE("router: prefix mode reads <value>~<sid> from the session cookie") {
  Config cfg = three_backends();
  cfg.sticky.server_cookie.enabled = true;
  cfg.sticky.server_cookie.mode = ServerCookieMode::Prefix;
  cfg.sticky.server_cookie.name = "io";
  Router r(cfg);
  Route x = r.route("/whoami", "io=n3~abc", 0, 0);
  CHECK(x.backend == 2);
  CHECK(x.strip_prefix);
}

TEST_CASE("router: route_into reuses one Route per connection and resets every field") {
  Config cfg = three_backends();
  Router r(cfg);
  Route x;
  r.route_into(x, "/socket.io/?EIO=4&transport=polling", "", 0, 0);
  REQUIRE(x.handshake);
  r.learn("abcdefghijklmnopqrst", x.backend, nullptr, 0);
  int owner = x.backend;
  r.route_into(x, "/socket.io/?EIO=4&transport=polling&sid=abcdefghijklmnopqrst", "", 0, 1);
  CHECK(!x.handshake);
  CHECK(x.key == "abcdefghijklmnopqrst");
  CHECK(x.backend == owner);
  CHECK(x.via == RouteVia::Table);
  CHECK(x.source == KeySource::Query);
  const char* buffer = x.key.data();
  r.route_into(x, "/socket.io/?EIO=4&transport=polling&sid=abcdefghijklmnopqrst", "", 0, 2);
  CHECK(x.key.data() == buffer);  // same buffer: no allocation per request
  r.route_into(x, "/socket.io/?EIO=4&sid=abc%64efghijklmnopqrst", "", 0, 3);  // decoded "d"
  CHECK(x.backend == owner);
  r.route_into(x, "/other", "", 0, 4);
  CHECK(x.key.empty());
  CHECK(!x.engineio);
  CHECK(x.source == KeySource::None);
  CHECK(x.via == RouteVia::Balance);
}

TEST_CASE("router: an evicted session's sid gets Engine.IO's 400; its cookie is balanced") {
  Config cfg = three_backends();
  Router r(cfg);
  r.learn("ev", 1, nullptr, 0);
  r.set_admin_state(1, AdminState::Drain);
  REQUIRE(r.table().mark_evicted("ev", 1));
  Route x = r.route("/socket.io/?EIO=4&transport=polling&sid=ev", "", 0, 10);
  CHECK(x.backend == -1);
  CHECK(x.local_status == 400);
  CHECK(x.evicted);
  // A websocket upgrade of that session too.
  CHECK(r.route("/socket.io/?EIO=4&transport=websocket&sid=ev", "", 0, 10).local_status == 400);
  Route y = r.route("/whoami", "io=ev", 0, 10);
  CHECK(y.backend >= 0);
  CHECK(y.backend != 1);
  CHECK(y.via == RouteVia::UnknownKey);
  // A proxy tag naming the old node does not bring it back there.
  cfg.sticky.tag.enabled = true;
  Router t(cfg);
  t.learn("tg", 2, nullptr, 0);
  REQUIRE(t.table().mark_evicted("tg", 2));
  CHECK(t.route("/socket.io/?EIO=4&sid=n3.tg", "", 0, 10).local_status == 400);
}

TEST_CASE("router: reconnect hint sends a handshake to the previous session's node when it may take one") {
  ConfigResult c = load_config_string(
      "listen: 127.0.0.1:0\n"
      "backends:\n"
      "  - {name: n1, address: 127.0.0.1:3001}\n"
      "  - {name: n2, address: 127.0.0.1:3002}\n"
      "  - {name: n3, address: 127.0.0.1:3003}\n"
      "sticky: {reconnect_hint: prev_sid}\n",
      "test.yaml");
  REQUIRE(c.config);
  Router r(*c.config);
  r.learn("old", 2, nullptr, 0);
  for (int i = 0; i < 4; ++i) {  // whatever the balancer's turn
    Route x = r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10);
    CHECK(x.handshake);
    CHECK(x.backend == 2);
    CHECK(x.via == RouteVia::Hint);
    CHECK(x.strip_hint);
  }
  // The hint beats the shared io cookie of another tab's session...
  r.learn("other", 0, nullptr, 0);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "io=other", 0, 10).backend == 2);
  // ...never a request's own sid.
  Route own = r.route("/socket.io/?EIO=4&transport=polling&sid=other&prev_sid=old", "", 0, 10);
  CHECK(own.backend == 0);
  CHECK(own.via == RouteVia::Table);
  CHECK(own.strip_hint);
  // Unknown, empty or malformed: balanced (and still stripped).
  for (const char* q : {"prev_sid=nope", "prev_sid=", "prev_sid=%zz", "prev_sid"}) {
    CAPTURE(q);
    Route x = r.route(std::string("/socket.io/?EIO=4&transport=polling&") + q, "", 0, 10);
    CHECK(x.via == RouteVia::Balance);
    CHECK(x.strip_hint);
  }
  // A node that may not take sessions now: drained, down, weight 0, evicted sid.
  r.set_admin_state(2, AdminState::Drain);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10).via == RouteVia::Balance);
  r.set_admin_state(2, AdminState::Ready);
  r.set_health(2, Health::Down, 10);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10).via == RouteVia::Balance);
  r.set_health(2, Health::Up, 10);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10).via == RouteVia::Hint);
  r.set_weight(2, 0);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10).via == RouteVia::Balance);
  r.set_weight(2, 1);
  r.table().mark_evicted("old", 2);
  CHECK(r.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10).via == RouteVia::Balance);
  // Off by default: the parameter is neither used nor stripped.
  Config plain_cfg = three_backends();
  Router plain(plain_cfg);
  plain.learn("old", 2, nullptr, 0);
  Route p = plain.route("/socket.io/?EIO=4&transport=polling&prev_sid=old", "", 0, 10);
  CHECK_FALSE(p.strip_hint);
  CHECK(p.via == RouteVia::Balance);
}

TEST_CASE("router: a request without sid and without transport is not a handshake (Socket.IO's own files)") {
  Config cfg = three_backends();
  Router r(cfg);
  CHECK_FALSE(r.route("/socket.io/socket.io.js", "", 0, 0).handshake);
  CHECK_FALSE(r.route("/socket.io/?EIO=4", "", 0, 0).handshake);
  CHECK(r.route("/socket.io/?EIO=4&transport=websocket", "", 0, 0).handshake);
}
