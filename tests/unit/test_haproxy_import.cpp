#include <doctest/doctest.h>

#include <map>
#include <string>

#include "stickyd/config.hpp"
#include "stickyd/haproxy_import.hpp"

using stickyd::haproxy::haproxy_time_ms;
using stickyd::haproxy::import_haproxy;
using stickyd::haproxy::ImportOptions;
using stickyd::haproxy::ImportResult;
using stickyd::haproxy::parse_haproxy;

namespace {

const std::map<std::string, std::string> kEnv = {{"P1", "3001"}, {"NODE", "10.0.0.7"}};

std::optional<std::string> env(std::string_view name) {
  auto it = kEnv.find(std::string(name));
  return it == kEnv.end() ? std::nullopt : std::optional<std::string>(it->second);
}

ImportResult run(const std::string& cfg, const std::string& backend = "") {
  ImportOptions o;
  o.file = "h.cfg";
  o.backend = backend;
  return import_haproxy(cfg, o, env);
}

// The output must be a config stickyd accepts.
void check_loads(const ImportResult& r) {
  REQUIRE(r.ok);
  stickyd::ConfigResult c = stickyd::load_config_string(r.yaml, "imported.yaml");
  std::string errors;
  for (const auto& e : c.errors) errors += e.to_string() + "\n";
  std::string why = errors + r.yaml;
  CHECK_MESSAGE(c.config.has_value(), why);
}

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("haproxy syntax: words, quotes, escapes, variables, comments, continuations") {
  auto words = [](const std::string& line) {
    auto p = parse_haproxy("global\n" + line + "\n", env);
    REQUIRE(p.error_line == 0);
    REQUIRE(p.sections.size() == 1);
    REQUIRE(p.sections[0].lines.size() == 1);
    return p.sections[0].lines[0].words;
  };
  using V = std::vector<std::string>;
  CHECK(words("  a  b\tc  # comment") == V{"a", "b", "c"});
  CHECK(words(R"(log-format %{+Q}o\ %t\ %s)") == V{"log-format", "%{+Q}o %t %s"});
  CHECK(words(R"(x "a b"'c d'e)") == V{"x", "a bc de"});
  CHECK(words(R"(x "#not a comment" \#neither # but this is)") == V{"x", "#not a comment", "#neither"});
  CHECK(words(R"(x "${P1}" "$NODE:80" '${P1}' \$P1 "\$P1" "$1")") ==
        V{"x", "3001", "10.0.0.7:80", "${P1}", "$P1", "$P1", "$1"});
  CHECK(words(R"(x "" '' "a\"b" 'a\b' \\ \x41)") == V{"x", "", "", "a\"b", "a\\b", "\\", "A"});
  // A trailing backslash joins the next line (keeping the first line's number).
  auto p = parse_haproxy("global\n  maxconn \\\n  100\n  nbthread 2\n", env);
  REQUIRE(p.error_line == 0);
  REQUIRE(p.sections[0].lines.size() == 2);
  CHECK(p.sections[0].lines[0].words == V{"maxconn", "100"});
  CHECK(p.sections[0].lines[0].number == 2);
  CHECK(p.sections[0].lines[1].number == 4);
  // Unset variables expand to nothing, with a note naming the line.
  auto q = parse_haproxy("global\n\n  x \"${NOPE}y\"\n", env);
  REQUIRE(q.notes.size() == 1);
  CHECK(q.notes[0] == "line 3: environment variable NOPE is not set (empty)");
  CHECK(q.sections[0].lines[0].words == V{"x", "y"});
}

TEST_CASE("haproxy syntax: sections, named defaults, malformed input with its line") {
  auto p = parse_haproxy(
      "defaults base\n  mode http\ndefaults\n  timeout client 5s\nbackend b from base\n  server s 1.2.3.4:80\n"
      "listen l 0.0.0.0:80\n  mode http\n", env);
  REQUIRE(p.error_line == 0);
  REQUIRE(p.sections.size() == 4);
  CHECK(p.sections[0].name == "base");
  CHECK(p.sections[1].name.empty());
  CHECK(p.sections[2].from == "base");
  CHECK(p.sections[3].args == std::vector<std::string>{"0.0.0.0:80"});
  struct Bad {
    std::string cfg;
    int line;
    std::string error;
  };
  const Bad bad[] = {
      {"global\n  x \"open\n", 2, "unterminated \"...\""},
      {"global\n\n  x 'open\n", 3, "unterminated '...'"},
      {"global\n  x \"${OPEN\"\n", 2, "unterminated '${' in \"...\""},
      {"global\n  x \\x4\n", 2, "incomplete '\\x' escape"},
      {"global\n  x \\xzz1\n", 2, "invalid '\\x' escape"},
      {"  server s 1.2.3.4:80\n", 1, "'server' outside of any section (global, defaults, frontend, backend, listen, ...)"},
      {"backend\n", 1, "'backend' needs a name"},
      {"backend b from\n", 1, "'from' needs the name of a defaults section"},
      {std::string("global\n  x a\0b\n", 15), 2, "NUL byte in the line"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.cfg);
    auto r = parse_haproxy(b.cfg, env);
    CHECK(r.error_line == b.line);
    CHECK(r.error == b.error);
  }
  ImportResult r = run("global\n  x \"open\n");
  CHECK(!r.ok);
  CHECK(r.error == "h.cfg:2: unterminated \"...\"");
}

TEST_CASE("haproxy time format: milliseconds by default") {
  CHECK(haproxy_time_ms("30000") == 30000);
  CHECK(haproxy_time_ms("30s") == 30000);
  CHECK(haproxy_time_ms("2m") == 120000);
  CHECK(haproxy_time_ms("1h") == 3600000);
  CHECK(haproxy_time_ms("1d") == 86400000);
  CHECK(haproxy_time_ms("1500us") == 1);
  CHECK(!haproxy_time_ms("5x"));
  CHECK(!haproxy_time_ms("s"));
  CHECK(!haproxy_time_ms(""));
}

TEST_CASE("import: the Socket.IO documentation's HAProxy example (listen + cookie io prefix)") {
  ImportResult r = run(
      "listen chat\n"
      "  bind *:80\n"
      "  default_backend nodes\n"
      "\n"
      "backend nodes\n"
      "  option httpchk HEAD /health\n"
      "  http-check expect status 200\n"
      "  cookie io prefix indirect nocache # using the `io` cookie set upon handshake\n"
      "  server app01 127.0.0.1:3001 check cookie app01\n"
      "  server app02 127.0.0.1:3002 check cookie app02\n"
      "  server app03 127.0.0.1:3003 check cookie app03\n");
  check_loads(r);
  CHECK(has(r.yaml, "  - \"0.0.0.0:80\"    # h.cfg:2\n"));
  CHECK(has(r.yaml, "  - {name: \"app01\", address: \"127.0.0.1:3001\", cookie: \"app01\"}    # h.cfg:9\n"));
  CHECK(has(r.yaml, "server_cookie: {name: \"io\", mode: prefix, indirect: true, nocache: true}"));
  CHECK(has(r.yaml, "  method: \"HEAD\"\n  path: \"/health\"\n  expect_status: 200\n"));
  CHECK(r.mapped == 8);  // bind, default_backend, httpchk, expect, cookie, 3 servers
  CHECK(r.unmapped == 0);
  stickyd::ConfigResult c = stickyd::load_config_string(r.yaml, "x");
  REQUIRE(c.config);
  CHECK(c.config->sticky.server_cookie.enabled);
  CHECK(c.config->sticky.server_cookie.mode == stickyd::ServerCookieMode::Prefix);
  CHECK(c.config->backends.size() == 3);
  CHECK(c.config->health.enabled);
}

TEST_CASE("import: socket.io's examples/cluster-haproxy shape (defaults, frontend, insert, leastconn)") {
  ImportResult r = run(
      "global\n  daemon\n  maxconn 4096\n\n"
      "defaults\n  mode http\n  balance leastconn\n  timeout client 30000ms\n  timeout server 30000ms\n"
      "  timeout connect 3000ms\n\n"
      "frontend http_in\n  bind *:80\n  default_backend nodes\n\n"
      "backend nodes\n  option httpchk HEAD /health\n  http-check expect status 200\n"
      "  cookie serverid insert\n"
      "  server server-john 127.0.0.1:3001 cookie server-john check\n"
      "  server server-paul 127.0.0.1:3002 cookie server-paul check\n");
  check_loads(r);
  CHECK(has(r.yaml, "balance: least_conn\n"));
  CHECK(has(r.yaml, "server_cookie: {name: \"serverid\", mode: insert}\n"));
  CHECK(has(r.yaml, "timeouts:\n  client: 30s\n  connect: 3s\n  server: 30s\n"));
  CHECK(has(r.yaml, "limits: {max_connections: 4096}\n"));
  CHECK(has(r.yaml, "#   h.cfg:2 daemon  -- stickyd runs in the foreground"));
  CHECK(r.unmapped == 1);
}

TEST_CASE("import: keyword by keyword") {
  struct Case {
    std::string cfg;          // backend body (a frontend `fe` sends everything to it)
    std::vector<std::string> expect;  // fragments of the YAML
    bool loads = true;        // false: names files that do not exist here (--check opens them)
  };
  const std::string fe = "frontend fe\n  bind 127.0.0.1:8080\n  default_backend be\nbackend be\n";
  const Case cases[] = {
      {"  balance roundrobin\n  server s 127.0.0.1:1\n", {"balance: round_robin\n"}},
      {"  balance source\n  server s 127.0.0.1:1\n", {"balance: hash\n", "hash of the client address"}},
      {"  balance url_param sid\n  server s 127.0.0.1:1\n", {"balance: round_robin\n", "'url_param' has no stickyd equivalent"}},
      {"  cookie SRV insert indirect nocache preserve httponly secure domain .a.test domain .b.test maxidle 30m maxlife 8h\n"
       "  server s 127.0.0.1:1 cookie s1\n",
       {"server_cookie: {name: \"SRV\", mode: insert, indirect: true, nocache: true, preserve: true, httponly: true, "
        "secure: true, domain: [\".a.test\", \".b.test\"], maxidle: 30m, maxlife: 8h}"}},
      {"  cookie SRV insert maxidle 3600\n  server s 127.0.0.1:1\n", {"maxidle: 1h"}},  // seconds by default
      {"  cookie SRV rewrite\n  server s 127.0.0.1:1\n", {"mode: rewrite"}},
      {"  cookie SRV\n  server s 127.0.0.1:1\n", {"mode: rewrite", "no mode given"}},
      {"  cookie SRV insert dynamic\n  dynamic-cookie-key k\n  server s 127.0.0.1:1\n",
       {"ignored: dynamic (values are fixed", "h.cfg:6 dynamic-cookie-key k  -- HAProxy's dynamic cookie values"}},
      {"  default-server check inter 3s rise 3 fall 4 slowstart 10s weight 7\n  server s 127.0.0.1:1\n",
       {"weight: 7", "interval: 3s\n", "timeout: 3s\n", "rise: 3\n", "fall: 4\n", "slow_start: 10s\n"}},
      {"  timeout check 1s\n  server s 127.0.0.1:1 check inter 5s\n", {"interval: 5s\n  timeout: 1s\n"}},
      {"  server s 127.0.0.1:1 disabled\n", {"weight: 0", "(disabled: weight 0"}},
      {"  server s 127.0.0.1:1 backup\n", {"ignored: backup"}},
      {"  server s 127.0.0.1:1 on-marked-down shutdown-sessions\n", {"# on-marked-down shutdown-sessions: a down node's"}},
      {"  server s 127.0.0.1:1 ssl verify required ca-file /ca.pem sni str(node.internal)\n",
       {"tls: {verify: true, ca: \"/ca.pem\", sni: \"node.internal\"}"}, false},
      {"  server s 127.0.0.1:1 ssl verify none\n", {"tls: {verify: false}"}},
      {"  server web:1 127.0.0.1:1\n", {"name: \"web_1\"", "renamed web_1"}},
      {"  server s [::1]:80\n", {"address: \"[::1]:80\""}},
      {"  server s unix@/run/x.sock\n  server t 127.0.0.1:1\n", {"h.cfg:5 server s unix@/run/x.sock  -- an address stickyd cannot reach"}},
      {"  server-template io 10 io.app.svc:3000 check resolvers dns\n",
       {"  - discover: {name: \"io.app.svc\", type: A, port: 3000, max: 10}"}},
      {"  server-template io 1-5 _http._tcp.io.app.svc resolvers dns\n",
       {"  - discover: {name: \"_http._tcp.io.app.svc\", type: SRV, max: 5}"}},
      {"  option redispatch\n  server s 127.0.0.1:1\n", {"on_down: redispatch\n", "a session whose node is down"}},
      {"  server s 127.0.0.1:1\n", {"(on_down: strict keeps HAProxy's 503)"}},
      {"  option httpchk /ping\n  server s 127.0.0.1:1 check\n", {"  path: \"/ping\"\n"}},
      {"  option httpchk\n  http-check send meth GET uri /hc ver HTTP/1.1\n  server s 127.0.0.1:1 check\n",
       {"  method: \"GET\"\n  path: \"/hc\"\n"}},
      {"  server s 127.0.0.1:1 check\n", {"HAProxy checked TCP connects"}},
      {"  timeout tunnel 1h\n  timeout http-request 10s\n  timeout http-keep-alive 2s\n  srvtimeout 40000\n  server s 127.0.0.1:1\n",
       {"  client_header: 10s\n", "  keepalive: 2s\n", "  server: 40s\n", "  tunnel: 1h\n"}},
      {"  timeout client-fin 1s\n  server s 127.0.0.1:1\n", {"timeout client-fin 1s  -- stickyd closes a half-closed side"}},
      {"  option forwardfor\n  server s 127.0.0.1:1\n", {"stickyd always appends X-Forwarded-For"}},
      {"  http-response set-header X-Served-By haproxy\n  http-response add-header X-B \"b c\"\n  server s 127.0.0.1:1\n",
       {"headers:\n  all:\n    \"X-Served-By\": \"haproxy\"\n    \"X-B\": \"b c\"\n"}},
      {"  http-response set-header X-A %[env(HOST)]\n  server s 127.0.0.1:1\n", {"a log-format value"}},
      {"  http-response set-header X-A a if { status 200 }\n  server s 127.0.0.1:1\n", {"a conditional header rule"}},
      {"  stick-table type string len 32 size 1m\n  stick on url_param(sid)\n  server s 127.0.0.1:1\n",
       {"stickyd keeps its own sid table"}},
      {"  acl a path_beg /x\n  server s 127.0.0.1:1\n", {"request rules and ACLs have no stickyd equivalent"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.cfg);
    ImportResult r = run(fe + c.cfg);
    if (c.loads) check_loads(r);
    REQUIRE(r.ok);
    for (const std::string& e : c.expect) {
      std::string why = e + "\n--- in ---\n" + r.yaml;
      CHECK_MESSAGE(has(r.yaml, e), why);
    }
  }
}

TEST_CASE("import: binds, global settings, resolvers") {
  ImportResult r = run(
      "global\n  nbthread 2\n  user haproxy\n  group haproxy\n  stats socket /run/h.sock\n  log /dev/log local0\n"
      "resolvers dns\n  nameserver ns1 10.96.0.10:53\n  hold valid 10s\n  accepted_payload_size 8192\n"
      "frontend fe\n  bind *:80,[::]:81\n  bind \"${NODE}:8443\" ssl crt /etc/ssl/site.pem alpn h2,http/1.1\n"
      "  bind unix@/run/x.sock\n  option httplog\n  default_backend be\n"
      "backend be\n  server-template io 3 io.svc:3000 resolvers dns\n");
  REQUIRE(r.ok);
  CHECK(has(r.yaml, "  - \"0.0.0.0:80\"    # h.cfg:12\n  - \"[::]:81\"    # h.cfg:12\n"));
  CHECK(has(r.yaml, "{address: \"10.0.0.7:8443\", tls: {certificates: [{cert: \"/etc/ssl/site.pem\", key: \"/etc/ssl/site.pem\"}]}}"));
  CHECK(has(r.yaml, "ignored: alpn"));
  CHECK(has(r.yaml, "bind unix@/run/x.sock  -- an address stickyd cannot listen on"));
  CHECK(has(r.yaml, "workers: 2\n"));
  CHECK(has(r.yaml, "user: \"haproxy\"\ngroup: \"haproxy\"\n"));
  CHECK(has(r.yaml, "resolvers:\n  nameservers: [\"10.96.0.10:53\"]\n  interval: 10s\n"));
  CHECK(has(r.yaml, "accepted_payload_size 8192  -- no stickyd resolver setting"));
  CHECK(has(r.yaml, "access_log: true\n"));
  CHECK(has(r.yaml, "stats socket /run/h.sock  -- stickyd's runtime API is the admin API"));
}

TEST_CASE("import: choosing the Socket.IO backend") {
  const std::string two =
      "frontend fe\n  bind :80\n  use_backend api if { path_beg /api }\n  default_backend io\n"
      "backend api\n  server a 127.0.0.1:1\n"
      "backend io\n  cookie SERVERID insert\n  server b 127.0.0.1:2 cookie b\n";
  // The one with cookie persistence wins.
  ImportResult r = run(two);
  check_loads(r);
  CHECK(has(r.yaml, "(backend 'io')"));
  CHECK(has(r.yaml, "use_backend api if { path_beg /api }  -- routing to another backend"));
  CHECK(has(r.yaml, "h.cfg:5 backend api  -- not the imported Socket.IO backend 'io'"));
  // Else the frontends' default backend, if only one is.
  r = run("frontend fe\n  bind :80\n  use_backend a if { path_beg /a }\n  default_backend b\n"
          "backend a\n  server a 127.0.0.1:1\nbackend b\n  server b 127.0.0.1:2\n");
  check_loads(r);
  CHECK(has(r.yaml, "(backend 'b')"));
  // Without either hint: an error naming the choice.
  const std::string ambiguous = "backend a\n  server a 127.0.0.1:1\nbackend b\n  server b 127.0.0.1:2\n";
  r = run(ambiguous);
  CHECK(!r.ok);
  CHECK(r.error == "h.cfg:3: several backends with servers (a, b): choose the Socket.IO one with --backend NAME");
  r = run(ambiguous, "b");
  check_loads(r);
  CHECK(has(r.yaml, "# No frontend routes to 'b'"));
  r = run(ambiguous, "c");
  CHECK(r.error == "h.cfg: no backend or listen section named 'c'");
  CHECK(run("global\n  maxconn 1\n").error == "h.cfg: no backend or listen section with servers");
  CHECK(run("backend b\n  server s unix@/x\n").error == "h.cfg: backend 'b' has no usable server");
  // Named defaults: `from` picks them; otherwise the last defaults before the section.
  r = run("defaults a\n  timeout server 7s\ndefaults b\n  timeout server 9s\n"
          "backend x from a\n  server s 127.0.0.1:1\n");
  check_loads(r);
  CHECK(has(r.yaml, "  server: 7s\n"));
}
