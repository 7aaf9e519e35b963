// WriteBatch: staged writes of one loop iteration, sent in one io_uring submit, through real
// TCP connections on 127.0.0.1. The far end of each connection is a plain non-blocking fd the
// test reads itself, so what arrived (and when) is seen byte for byte.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "stickyd/net.hpp"
#include "stickyd/write_batch.hpp"
#include "loopback.hpp"

using namespace stickyd;

namespace {

class TestSocket final : public Socket {
 public:
  explicit TestSocket(uv_loop_t* loop) : Socket(loop) {}
  int write_error = 0;
  int drained = 0;
  bool closed = false;

 protected:
  void on_read(const char*, size_t) override {}
  void on_eof() override {}
  void on_read_error(int) override {}
  void on_write_error(int status) override { write_error = status; }
  void on_drained() override { ++drained; }
  void on_deadline() override {}
  void on_closed() override { closed = true; }
};

// A TCP connection on loopback: `sock` (a Socket on the loop) and `peer` (a raw fd).
struct Pair {
  std::unique_ptr<TestSocket> sock;
  int peer = -1;
  ~Pair() {
    if (peer >= 0) ::close(peer);
  }
};

struct Fixture {
  uv_loop_t loop;
  std::unique_ptr<WriteBatch> batch;
  std::vector<std::unique_ptr<Pair>> pairs;

  explicit Fixture(bool with_batch = true) {
    uv_loop_init(&loop);
    if (with_batch) {
      std::string why;
      batch = WriteBatch::create(&loop, why);
      INFO("io_uring: " << why);
      REQUIRE(batch);
      batch->attach();
    }
  }
  ~Fixture() {
    for (auto& p : pairs)
      if (!p->sock->closing()) p->sock->close();
    WriteBatch::close(std::move(batch));
    uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks
    for (auto& p : pairs) CHECK(p->sock->closed);
    pairs.clear();
    CHECK(uv_loop_close(&loop) == 0);
  }

  Pair& connect(int sndbuf = 0) {
    sockaddr_in a;
    int lfd = test::bound_loopback_socket(a);
    REQUIRE(::listen(lfd, 1) == 0);
    int cfd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (sndbuf) ::setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    REQUIRE(::connect(cfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    int sfd = ::accept(lfd, nullptr, nullptr);
    ::close(lfd);
    REQUIRE(sfd >= 0);
    if (sndbuf) {  // a small receive window too, so that the sender fills up quickly
      ::setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof sndbuf);
    }
    ::fcntl(sfd, F_SETFL, ::fcntl(sfd, F_GETFL) | O_NONBLOCK);
    auto p = std::make_unique<Pair>();
    p->sock = std::make_unique<TestSocket>(&loop);
    REQUIRE(uv_tcp_open(p->sock->tcp(), cfd) == 0);
    p->peer = sfd;
    pairs.push_back(std::move(p));
    return *pairs.back();
  }

  void turn() { uv_run(&loop, UV_RUN_NOWAIT); }  // one iteration: prepare, poll, check
};

// Everything the peer can read now (non-blocking).
std::string drain(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Reads until `want` bytes arrived, running the loop in between; between turns it waits for
// the fd to become readable (a zero-window probe can take a few hundred ms). Bounded: 5 s.
std::string read_all(Fixture& f, int fd, size_t want) {
  std::string out;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (out.size() < want && std::chrono::steady_clock::now() < until) {
    f.turn();
    size_t before = out.size();
    out += drain(fd);
    if (out.size() == before) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 10);
    }
  }
  return out;
}

std::string pattern(size_t n, size_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
  return s;
}

}  // namespace

TEST_CASE("write batch: small sends wait for the loop's turn and leave in one submit") {
  Fixture f;
  Pair& a = f.connect();
  Pair& b = f.connect();
  Pair& c = f.connect();
  CHECK(a.sock->send("GET / HTTP/1.1\r\n"));
  CHECK(a.sock->send("Host: x\r\n\r\n"));  // behind the first, in the same write
  CHECK(b.sock->send("second"));
  CHECK(c.sock->send("third"));
  CHECK(drain(a.peer).empty());  // staged, not written yet
  CHECK(f.batch->submits() == 0);
  f.turn();
  CHECK(f.batch->submits() == 1);
  CHECK(f.batch->writes() == 3);  // one SENDMSG per socket
  CHECK(read_all(f, a.peer, 27) == "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_all(f, b.peer, 6) == "second");
  CHECK(read_all(f, c.peer, 5) == "third");
  CHECK(a.sock->queued_bytes() == 0);
  CHECK(a.sock->write_error == 0);
}

TEST_CASE("write batch: a send too large to stage goes out at once, after what was staged") {
  Fixture f;
  Pair& a = f.connect();
  std::string big = pattern(WriteBatch::kStageMax + 1, 3);
  CHECK(a.sock->send("head;"));
  CHECK(a.sock->send(big));
  // Both are on the wire before the loop turns: the staged head was written first.
  std::string got = drain(a.peer);
  got += read_all(f, a.peer, 5 + big.size() - got.size());
  CHECK(got.size() == 5 + big.size());
  CHECK((got == "head;" + big));
  CHECK(f.batch->writes() == 0);
}

TEST_CASE("write batch: what a full socket does not take is queued, in order, with backpressure") {
  Fixture f;
  Pair& a = f.connect(4096);  // small buffers: the kernel soon stops taking bytes
  Pair& other = f.connect();  // a second socket in every batch, so that the ring is used
  std::string expect;
  size_t rounds = 0;
  // Stage 8 KiB per loop turn until a submit leaves bytes behind (queued on libuv).
  while (a.sock->queued_bytes() == 0 && rounds < 1000) {
    std::string chunk = pattern(8192, rounds);
    CHECK(a.sock->send(chunk));
    CHECK(other.sock->send("x"));
    expect += chunk;
    f.turn();
    ++rounds;
  }
  REQUIRE(a.sock->queued_bytes() > 0);
  CHECK(f.batch->writes() == 2 * rounds);  // every round went through the ring
  // Later sends queue behind the remainder instead of being staged past it.
  std::string tail = pattern(100, 99);
  CHECK(a.sock->send(tail));
  expect += tail;
  CHECK(a.sock->queued_bytes() >= 100);
  std::string got = read_all(f, a.peer, expect.size());
  CHECK(got.size() == expect.size());
  CHECK((got == expect));  // (not printed: a megabyte)
  CHECK(a.sock->queued_bytes() == 0);
  CHECK(a.sock->drained >= 1);  // the queue emptied: on_drained, as for any queued write
  CHECK(a.sock->write_error == 0);
  CHECK(read_all(f, other.peer, rounds) == std::string(rounds, 'x'));
}

TEST_CASE("write batch: a send to a reset connection reports a write error at the loop's turn") {
  Fixture f;
  Pair& a = f.connect();
  Pair& other = f.connect();
  linger lg{1, 0};
  ::setsockopt(a.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(a.peer);  // RST
  a.peer = -1;
  // The first write after a reset may still be taken by the kernel; keep sending until one
  // fails (bounded).
  int sent = 0;
  for (; sent < 50 && a.sock->write_error == 0; ++sent) {
    CHECK(a.sock->send("data after the reset"));
    CHECK(other.sock->send("y"));
    f.turn();
  }
  CHECK(a.sock->write_error < 0);
  CHECK((a.sock->write_error == UV_EPIPE || a.sock->write_error == UV_ECONNRESET));
  CHECK(f.batch->writes() == static_cast<uint64_t>(2 * sent));
  // The other socket of the same batches was not disturbed.
  CHECK(other.sock->write_error == 0);
  CHECK(read_all(f, other.peer, static_cast<size_t>(sent)) == std::string(static_cast<size_t>(sent), 'y'));
}

TEST_CASE("write batch: a lone staged write goes out as one write(2), not through the ring") {
  Fixture f;
  Pair& a = f.connect();
  CHECK(a.sock->send("alone"));
  CHECK(drain(a.peer).empty());
  f.turn();
  CHECK(read_all(f, a.peer, 5) == "alone");
  CHECK(f.batch->writes() == 0);
}

TEST_CASE("write batch: close() and shutdown_write() send what was staged first") {
  Fixture f;
  Pair& a = f.connect();
  Pair& b = f.connect();
  CHECK(a.sock->send("last words"));
  a.sock->close();
  CHECK(b.sock->send("before the FIN"));
  b.sock->shutdown_write();
  f.turn();
  CHECK(read_all(f, a.peer, 10) == "last words");
  std::string got = read_all(f, b.peer, 14);
  CHECK(got == "before the FIN");
  char c;
  CHECK(::recv(b.peer, &c, 1, 0) == 0);  // then EOF
  CHECK(f.batch->writes() == 0);  // both went out at once, not through the ring
}

TEST_CASE("write batch: without a batch on the loop every send is written at once") {
  Fixture f(false);
  Pair& a = f.connect();
  CHECK(WriteBatch::of(&f.loop) == nullptr);
  CHECK(a.sock->send("now"));
  CHECK(drain(a.peer) == "now");  // no loop turn needed
}

TEST_CASE("write batch: closing the batch flushes it and detaches it from the loop") {
  Fixture f;
  Pair& a = f.connect();
  CHECK(WriteBatch::of(&f.loop) == f.batch.get());
  CHECK(a.sock->send("staged"));
  WriteBatch::close(std::move(f.batch));
  CHECK(WriteBatch::of(&f.loop) == nullptr);
  CHECK(drain(a.peer) == "staged");
  CHECK(a.sock->send(" then direct"));
  CHECK(drain(a.peer) == " then direct");
}
