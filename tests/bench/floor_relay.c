// floor_relay: the cheapest possible proxy for compare.sh's poll test, to measure the floor
// that the kernel puts under a readiness-I/O HTTP/1.1 proxy (epoll, read, write) on this machine.
//
// It does no HTTP at all: each accepted connection gets its own connection to one fixed
// backend, and bytes are copied both ways with one read() and one write() per readiness
// event (epoll, level-triggered, one thread). Per sticky poll that is the same 4 syscalls
// and the same 4 TCP segments stickyd and HAProxy make (strace, nstat), with no parsing,
// routing, timers or buffering. Its CPU per request is what the syscalls alone cost; a proxy
// making the same syscalls can only be slower (one batching its writes, e.g. with io_uring,
// could go below it). Benchmark tool only: no partial-write queueing beyond a small
// per-connection carry buffer, no timeouts, exits on the first error it does not expect.
//
//   floor_relay LISTEN_PORT BACKEND_PORT      (both on 127.0.0.1)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_FD = 65536, BUF = 16384 };

struct side {
    int peer;        // fd bytes read here are written to; -1 = unused slot
    size_t pending;  // bytes of carry not yet written to peer (peer's socket was full)
    char *carry;     // BUF bytes, allocated the first time peer is full (never, for polls)
};
static struct side *sides;
static int ep;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void watch(int fd, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, op, fd, &ev) != 0) die("epoll_ctl");
}

static void close_pair(int fd) {
    int peer = sides[fd].peer;
    sides[fd].peer = -1;
    sides[fd].pending = 0;
    free(sides[fd].carry);
    sides[fd].carry = NULL;
    close(fd);
    if (peer >= 0 && sides[peer].peer == fd) close_pair(peer);
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor_relay LISTEN_PORT BACKEND_PORT\n");
        return 2;
    }
    struct sockaddr_in listen_addr = loopback(atoi(argv[1]));
    struct sockaddr_in backend_addr = loopback(atoi(argv[2]));
    sides = calloc(MAX_FD, sizeof *sides);
    if (!sides) die("calloc");
    for (int i = 0; i < MAX_FD; i++) sides[i].peer = -1;

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&listen_addr, sizeof listen_addr) != 0) die("bind");
    if (listen(lfd, 1024) != 0) die("listen");
    ep = epoll_create1(0);
    watch(lfd, EPOLLIN, EPOLL_CTL_ADD);

    struct epoll_event events[256];
    char buf[BUF];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (cfd < 0) continue;
                // Blocking connect, then non-blocking: setup cost is outside the measurement.
                int ufd = socket(AF_INET, SOCK_STREAM, 0);
                if (ufd < 0 || cfd >= MAX_FD || ufd >= MAX_FD ||
                    connect(ufd, (struct sockaddr *)&backend_addr, sizeof backend_addr) != 0) {
                    close(cfd);
                    if (ufd >= 0) close(ufd);
                    continue;
                }
                if (fcntl(ufd, F_SETFL, fcntl(ufd, F_GETFL) | O_NONBLOCK) != 0) die("fcntl");
                sides[cfd].peer = ufd;
                sides[ufd].peer = cfd;
                watch(cfd, EPOLLIN, EPOLL_CTL_ADD);
                watch(ufd, EPOLLIN, EPOLL_CTL_ADD);
                continue;
            }
            if (sides[fd].peer < 0) continue;  // closed earlier in this batch
            int peer = sides[fd].peer;
            if (events[i].events & EPOLLOUT) {  // fd's socket drained: flush what it carries
                struct side *s = &sides[peer];  // bytes read on peer, waiting to go out on fd
                ssize_t w = write(fd, s->carry, s->pending);
                if (w < 0 && errno != EAGAIN) { close_pair(fd); continue; }
                if (w > 0) {
                    memmove(s->carry, s->carry + w, s->pending - (size_t)w);
                    s->pending -= (size_t)w;
                }
                if (s->pending == 0) {
                    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
                    watch(peer, EPOLLIN, EPOLL_CTL_MOD);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close_pair(fd);
                continue;
            }
            ssize_t w = write(peer, buf, (size_t)r);
            if (w < 0 && errno != EAGAIN) { close_pair(fd); continue; }
            if (w < r) {  // peer full: keep the rest, stop reading fd until it drains
                size_t done = w > 0 ? (size_t)w : 0;
                if (!sides[fd].carry && !(sides[fd].carry = malloc(BUF))) die("malloc");
                memcpy(sides[fd].carry, buf + done, (size_t)r - done);
                sides[fd].pending = (size_t)r - done;
                watch(fd, 0, EPOLL_CTL_MOD);
                watch(peer, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            }
        }
    }
}
