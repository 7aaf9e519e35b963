// Test helper: a real DNS server (dnsmasq, Debian dnsmasq-base) on 127.0.0.1 and a port the
// kernel picked, answering only from what the test gives it (no upstream, no /etc/hosts).
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace stickyd::test {

class Dnsmasq {
 public:
  // `args`: record options (--host-record=..., --srv-host=..., --addn-hosts=FILE, ...).
  explicit Dnsmasq(std::vector<std::string> args) {
    // The port is one the kernel just had free for UDP; dnsmasq also binds it for TCP, which
    // a client connection may hold meanwhile: then it exits, and another port is tried.
    for (int attempt = 0; attempt < 8 && !start(args); ++attempt) {
    }
    REQUIRE_MESSAGE(pid_ > 0, "dnsmasq did not start: " << log_);
  }
  ~Dnsmasq() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (err_ >= 0) close(err_);
  }
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void reread() { kill(pid_, SIGHUP); }  // re-reads --addn-hosts files

 private:
  bool start(const std::vector<std::string>& args) {
    port_ = free_udp_port();
    std::vector<std::string> argv = {"dnsmasq", "-k", "--port=" + std::to_string(port_),
                                     "--listen-address=127.0.0.1", "--bind-interfaces",
                                     "--no-resolv", "--no-hosts", "--pid-file=", "--user=root",
                                     "--group=root", "--log-facility=-", "--conf-file=/dev/null"};
    argv.insert(argv.end(), args.begin(), args.end());
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(out[1], 2);
      close(out[0]);
      std::vector<char*> cargs;
      for (std::string& a : argv) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execvp("dnsmasq", cargs.data());
      std::fprintf(stderr, "cannot run dnsmasq (install dnsmasq-base)\n");
      _exit(127);
    }
    close(out[1]);
    if (err_ >= 0) close(err_);
    err_ = out[0];
    // Ready once it answers a query for the root (REFUSED is fine); gone if it exited.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (answers()) return true;
      drain_log(50);
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {  // exited (port taken): reaped
        pid_ = -1;
        return false;
      }
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return false;
  }
  static int free_udp_port() {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
  }
  bool answers() {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Query id 1, recursion desired, one question: ". IN A".
    const unsigned char q[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
    sendto(fd, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    pollfd p{fd, POLLIN, 0};
    bool ok = poll(&p, 1, 100) == 1;
    close(fd);
    return ok;
  }
  void drain_log(int ms) {
    pollfd p{err_, POLLIN, 0};
    if (poll(&p, 1, ms) != 1) return;
    char buf[1024];
    ssize_t n = read(err_, buf, sizeof buf);
    if (n > 0) log_.append(buf, static_cast<size_t>(n));
  }
  pid_t pid_ = -1;
  int port_ = 0;
  int err_ = -1;
  std::string log_;
};

}  // namespace stickyd::test
