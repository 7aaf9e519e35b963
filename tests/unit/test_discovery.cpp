// Discovery: identities and set reconciliation (pure), and the c-ares resolver on a uv loop
// against a real DNS server (dnsmasq on 127.0.0.1).
#include <doctest/doctest.h>
#include <uv.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "dnsmasq.hpp"
#include "stickyd/discovery.hpp"

using namespace stickyd;

namespace {

DnsTarget target(const std::string& host, uint16_t port, const std::string& ip) {
  DnsTarget t;
  t.host = host;
  t.port = port;
  std::string text = ip.find(':') != std::string::npos ? "[" + ip + "]:" + std::to_string(port)
                                                       : ip + ":" + std::to_string(port);
  REQUIRE_FALSE(parse_socket_address(text, t.address, false).has_value());
  return t;
}

DiscoverConfig srv_entry(uint32_t max = 64) {
  DiscoverConfig d;
  d.name = "_io._tcp.io.test";
  d.type = DiscoverType::SRV;
  d.max = max;
  return d;
}

std::vector<std::string> names_of(const DiscoveredSet& s) {
  std::vector<std::string> out;
  for (const auto& [_, m] : s.members) out.push_back(m.name);
  return out;
}

// A uv loop run until a condition holds (bounded).
struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  template <typename P>
  bool run_until(P pred, int limit_ms = 5000) {
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    bool expired = false;
    guard.data = &expired;
    uv_timer_start(&guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; },
                   static_cast<uint64_t>(limit_ms), 0);
    while (!pred() && !expired) uv_run(&loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    return pred();
  }
  ~Loop() {
    uv_run(&loop, UV_RUN_NOWAIT);  // close callbacks
    CHECK(uv_loop_close(&loop) == 0);  // nothing leaked by the resolver
  }
};

struct Answer {
  bool done = false;
  int status = -1;
  std::string error;
  std::vector<DnsTarget> targets;
  uint32_t ttl = 0;
};

Answer lookup(Loop& l, DnsResolver& r, const std::string& name, DiscoverType type, uint16_t port) {
  Answer a;
  r.lookup(name, type, port, [&a](int status, const std::string& error, std::vector<DnsTarget> t,
                                  uint32_t ttl) {
    a.done = true;
    a.status = status;
    a.error = error;
    a.targets = std::move(t);
    a.ttl = ttl;
  });
  REQUIRE(l.run_until([&] { return a.done; }));
  return a;
}

std::vector<std::string> identities(DiscoverType type, const std::vector<DnsTarget>& ts) {
  std::vector<std::string> out;
  for (const DnsTarget& t : ts) out.push_back(discovered_identity(type, t));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("discovery: identities and names derive from the record only") {
  CHECK(discovered_identity(DiscoverType::A, target("127.0.0.11", 3000, "127.0.0.11")) == "127.0.0.11:3000");
  CHECK(discovered_identity(DiscoverType::AAAA, target("fd00::5", 3000, "fd00::5")) == "[fd00::5]:3000");
  // SRV: the target's name, whatever its address.
  CHECK(discovered_identity(DiscoverType::SRV, target("io-0.io.app.svc", 3000, "10.0.0.1")) ==
        discovered_identity(DiscoverType::SRV, target("io-0.io.app.svc", 3000, "10.0.0.9")));
  CHECK(discovered_name("127.0.0.11:3000") == "127.0.0.11_3000");
  CHECK(discovered_name("[fd00::5]:3000") == "fd00--5_3000");
  CHECK(discovered_name("io-0.io.app.svc.cluster.local:3000") == "io-0.io.app.svc.cluster.local_3000");
}

TEST_CASE("discovery: a set follows good answers; order does not matter; missing ones drain") {
  DiscoverConfig d = srv_entry();
  DiscoveredSet s;
  std::vector<DnsTarget> three = {target("n1.io.test", 3000, "127.0.0.11"),
                                  target("n2.io.test", 3000, "127.0.0.12"),
                                  target("n3.io.test", 3000, "127.0.0.13")};
  auto c = s.apply(d, three, 0);
  CHECK(c.added.size() == 3);
  CHECK(names_of(s) == std::vector<std::string>{"n1.io.test_3000", "n2.io.test_3000", "n3.io.test_3000"});
  // Shuffled answers (and duplicates) change nothing.
  std::vector<DnsTarget> shuffled = {three[2], three[0], three[1], three[0]};
  CHECK_FALSE(s.apply(d, shuffled, 10).any());
  // n2 leaves: drained, not removed.
  c = s.apply(d, {three[0], three[2]}, 20);
  CHECK(c.drained == std::vector<std::string>{"n2.io.test_3000"});
  CHECK(s.members.size() == 3);
  CHECK_FALSE(s.members.at("n2.io.test:3000").present);
  CHECK(s.members.at("n2.io.test:3000").missing_since_ms == 20);
  // n2 is back, at a new address (the pod restarted): undrained and moved, same identity.
  c = s.apply(d, {three[0], target("n2.io.test", 3000, "127.0.0.22"), three[2]}, 30);
  CHECK(c.undrained == std::vector<std::string>{"n2.io.test_3000"});
  CHECK(c.moved == std::vector<std::string>{"n2.io.test_3000"});
  CHECK(s.members.at("n2.io.test:3000").target.address.text == "127.0.0.22:3000");
}

TEST_CASE("discovery: max keeps the same members whatever the answer order (replicas agree)") {
  DiscoverConfig d = srv_entry(3);
  std::vector<DnsTarget> many;
  for (int i = 0; i < 10; ++i)
    many.push_back(target("n" + std::to_string(i) + ".io.test", 3000, "127.0.0." + std::to_string(20 + i)));
  std::mt19937 rng(7);
  std::vector<std::string> first;
  for (int round = 0; round < 5; ++round) {
    std::shuffle(many.begin(), many.end(), rng);
    DiscoveredSet s;
    s.apply(d, many, 0);
    CHECK(s.members.size() == 3);
    if (round == 0) first = names_of(s);
    CHECK(names_of(s) == first);
  }
  CHECK(first == std::vector<std::string>{"n0.io.test_3000", "n1.io.test_3000", "n2.io.test_3000"});
}

TEST_CASE("discovery: follows a hosts file through dnsmasq; drained backends expire after hold or when down") {
  char path[] = "/tmp/stickyd-discovery-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  auto write_hosts = [&](const char* text) {
    FILE* f = std::fopen(path, "w");
    REQUIRE(f != nullptr);
    std::fputs(text, f);
    std::fclose(f);
  };
  write_hosts("127.0.0.11 io.test\n127.0.0.12 io.test\n127.0.0.13 io.test\n");
  {
    test::Dnsmasq dns({std::string("--addn-hosts=") + path});
    Loop l;
    int changes = 0;
    Discovery disc(&l.loop, [&] { ++changes; });
    Config cfg;
    DiscoverConfig d;
    d.name = "io.test";
    d.type = DiscoverType::A;
    d.port = 3000;
    d.hold = Millis(30000);
    cfg.discover.push_back(d);
    cfg.resolvers.nameservers = {dns.address()};
    cfg.resolvers.interval = Millis(100);
    cfg.sticky.secret = "0123456789abcdef-secret";
    disc.configure(cfg);
    REQUIRE(l.run_until([&] { return changes == 1; }));
    std::vector<BackendConfig> bs = disc.backends(cfg);
    REQUIRE(bs.size() == 3);
    CHECK(bs[0].name == "127.0.0.11_3000");
    CHECK(bs[0].address.text == "127.0.0.11:3000");
    CHECK(bs[0].cookie == derive_cookie_value(cfg.sticky.secret, "127.0.0.11_3000"));
    CHECK(bs[0].discover == 0);

    // .12 and .13 leave DNS: drained, still backends.
    write_hosts("127.0.0.11 io.test\n");
    dns.reread();
    REQUIRE(l.run_until([&] { return changes == 2; }));
    CHECK(disc.backends(cfg).size() == 3);
    CHECK(disc.draining("127.0.0.12_3000"));
    CHECK_FALSE(disc.draining("127.0.0.11_3000"));

    // Sessions left on .12: kept. Then idle for `hold`: removed. .13 is marked down: at once.
    auto none = [](const std::string&) { return false; };
    auto idle12 = [](const std::string& n) { return n == "127.0.0.12_3000"; };
    auto down13 = [](const std::string& n) { return n == "127.0.0.13_3000"; };
    CHECK_FALSE(disc.expire(1000, none, none));
    CHECK(disc.expire(2000, idle12, down13));  // .13 goes; .12 starts its hold
    CHECK(disc.backends(cfg).size() == 2);
    CHECK_FALSE(disc.expire(2000 + 29999, idle12, none));
    CHECK(disc.expire(2000 + 30000, idle12, none));
    bs = disc.backends(cfg);
    REQUIRE(bs.size() == 1);
    CHECK(bs[0].name == "127.0.0.11_3000");
    CHECK(disc.lookups() >= 2);

    // DNS goes away: the set stays as it is.
    int before = changes;
    disc.configure(cfg);  // the same entry and resolvers: the set is kept
    CHECK(disc.backends(cfg).size() == 1);
    CHECK(changes == before);
    disc.stop();
  }
  unlink(path);
}

TEST_CASE("discovery: DnsResolver against dnsmasq: A, AAAA, SRV, empty and refused answers") {
  test::Dnsmasq dns({"--host-record=io.test,127.0.0.11", "--host-record=io.test,127.0.0.12",
                     "--host-record=io6.test,::1", "--host-record=n1.io.test,127.0.0.11",
                     "--host-record=n2.io.test,127.0.0.12", "--host-record=n6.io.test,::1",
                     "--srv-host=_io._tcp.io.test,n1.io.test,3001",
                     "--srv-host=_io._tcp.io.test,n2.io.test,3002",
                     "--srv-host=_io._tcp.io.test,n6.io.test,3006",
                     "--srv-host=_io._tcp.io.test,gone.io.test,3009", "--local-ttl=7",
                     "--address=/empty.test/"});
  Loop l;
  ResolversConfig rc;
  rc.nameservers = {dns.address()};
  rc.timeout = Millis(500);
  DnsResolver r(&l.loop, rc);
  REQUIRE(r.ok());

  Answer a = lookup(l, r, "io.test", DiscoverType::A, 3000);
  CHECK(a.status == 0);
  CHECK(identities(DiscoverType::A, a.targets) == std::vector<std::string>{"127.0.0.11:3000", "127.0.0.12:3000"});
  CHECK(a.ttl == 7);

  a = lookup(l, r, "io6.test", DiscoverType::AAAA, 3000);
  CHECK(a.status == 0);
  CHECK(identities(DiscoverType::AAAA, a.targets) == std::vector<std::string>{"[::1]:3000"});

  // SRV: one backend per target:port, addressed by the target's A (else AAAA) record; a
  // target without any address is left out.
  a = lookup(l, r, "_io._tcp.io.test", DiscoverType::SRV, 0);
  CHECK(a.status == 0);
  CHECK(identities(DiscoverType::SRV, a.targets) ==
        std::vector<std::string>{"n1.io.test:3001", "n2.io.test:3002", "n6.io.test:3006"});
  for (const DnsTarget& t : a.targets) {
    if (t.host == "n1.io.test") CHECK(t.address.text == "127.0.0.11:3001");
    if (t.host == "n6.io.test") CHECK(t.address.text == "[::1]:3006");
  }

  a = lookup(l, r, "empty.test", DiscoverType::A, 3000);  // NXDOMAIN: an answer with nothing
  CHECK(a.status == 0);
  CHECK(a.targets.empty());

  a = lookup(l, r, "elsewhere.example", DiscoverType::A, 3000);  // no upstream: REFUSED
  CHECK(a.status != 0);
  CHECK_FALSE(a.error.empty());
}

TEST_CASE("discovery: a large SRV set is truncated over UDP and read over TCP") {
  std::vector<std::string> args;
  for (int i = 0; i < 40; ++i) {
    std::string host = "pod-" + std::to_string(i) + ".a-rather-long-service-name.io.test";
    args.push_back("--host-record=" + host + ",127.0.1." + std::to_string(i + 1));
    args.push_back("--srv-host=_io._tcp.big.test," + host + ",3000");
  }
  test::Dnsmasq dns(args);
  Loop l;
  ResolversConfig rc;
  rc.nameservers = {dns.address()};
  DnsResolver r(&l.loop, rc);
  Answer a = lookup(l, r, "_io._tcp.big.test", DiscoverType::SRV, 0);
  CHECK(a.status == 0);
  CHECK(a.targets.size() == 40);
}

TEST_CASE("discovery: DnsResolver with no server answering reports a timeout, and frees everything") {
  Loop l;
  ResolversConfig rc;
  rc.nameservers = {"127.0.0.1:9"};  // discard port: nothing answers
  rc.timeout = Millis(100);
  DnsResolver r(&l.loop, rc);
  Answer a = lookup(l, r, "io.test", DiscoverType::A, 3000);
  CHECK(a.status != 0);
}
