// Open-loop HTTP/1.1 load generator: latency at a fixed request rate (tests/bench/compare.sh
// test 5). wrk2 is not packaged here; this does what `wrk2 -R` does, on one libuv loop.
//
//   build/tests/bench/fixed_rate --port P --rate R [--connections 50] [--duration 10s]
//       [--warmup 1s] [--grace 2s] [--host 127.0.0.1] [--timeline]
//       (--path '/socket.io/?EIO=4&transport=polling&sid=XYZ' [--header 'Cookie: io=XYZ']...
//        | --handshake [--path '/socket.io/?EIO=4&transport=polling'])
//
// Request i is SCHEDULED at t0 + i/R (a timerfd armed at each intended time, 1 us timer slack)
// on connection i mod C (keep-alive, no pipelining: one request in flight per connection). If
// that connection is still waiting for its previous response, the request waits on it and is
// sent as soon as the response is in; it is never skipped. Latency = end of the response -
// intended send time (corrected for coordinated omission, like wrk2), so a proxy that stalls
// for 100 ms shows ~100 ms on every request scheduled during the stall, not on one.
// The request is the one `wrk -H ... URL` sends: "GET <path> HTTP/1.1", "Host: 127.0.0.1:<port>",
// then the --header lines. --handshake = requests without a sid (new Engine.IO sessions); the
// response body must start with `0{"sid":"` (else counted in bad_body).
//
// Requests scheduled in the first --warmup seconds are sent but not recorded; the next
// --duration seconds are recorded; then no new request is scheduled, and the run stops when
// every request has been answered or --grace seconds later (hard stop; requests still
// unanswered then are counted in `unfinished`). Latencies go into a log-linear histogram
// (128 linear sub-buckets per power of two of nanoseconds: <= 0.4% error at the midpoint).
// stdout: one line, `RESULT key=value ...` (latencies in ms); details on stderr (--timeline: also
// count, mean and max latency per 100 ms of intended send time, to locate stalls).
// Connects to 127.0.0.1 only. Exit status: 0 when some response was recorded, 1 if none,
// 2 on bad arguments.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// ---- histogram --------------------------------------------------------------------------------
struct Histogram {
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  std::vector<uint64_t> counts = std::vector<uint64_t>(kSub + (64 - kSubBits) * kSub, 0);
  uint64_t n = 0, max = 0;
  long double sum = 0;

  static size_t index(uint64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    int e = 63 - __builtin_clzll(v);  // >= kSubBits
    int shift = e - kSubBits;
    return static_cast<size_t>(kSub + static_cast<uint64_t>(shift) * kSub + ((v >> shift) - kSub));
  }
  static uint64_t midpoint(size_t i) {
    if (i < kSub) return i;
    uint64_t shift = (i - kSub) / kSub, top = kSub + (i - kSub) % kSub;
    return (top << shift) + ((uint64_t{1} << shift) >> 1);
  }
  void add(uint64_t v) {
    ++counts[index(v)];
    ++n;
    max = std::max(max, v);
    sum += static_cast<long double>(v);
  }
  uint64_t percentile(double p) const {  // p in [0, 100]
    if (n == 0) return 0;
    auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
    rank = std::clamp<uint64_t>(rank, 1, n);
    uint64_t c = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      c += counts[i];
      if (c >= rank) return std::min(midpoint(i), max);
    }
    return max;
  }
  double mean() const { return n ? static_cast<double>(sum / n) : 0.0; }
};

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// ---- HTTP/1.1 response parser (status line, headers, Content-Length / chunked / until close) ---
struct Response {
  enum class St { kStatus, kHeaders, kBody, kChunkSize, kChunkData, kChunkCrlf, kTrailers, kUntilClose, kDone };
  St st = St::kStatus;
  int status = 0;
  bool http10 = false, keep_alive10 = false, close = false, chunked = false, has_length = false;
  bool set_cookie = false;
  uint64_t remaining = 0;
  std::string body_head;  // first bytes of the body (handshake check)

  void reset() { *this = Response{}; }
  void take_body(const char* p, size_t n) {
    if (body_head.size() < 64) body_head.append(p, std::min(n, 64 - body_head.size()));
  }
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}
bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (iequals(hay.substr(i, needle.size()), needle)) return true;
  return false;
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Consumes bytes of `buf` from `pos`; returns false on a protocol error. r.st == kDone when a
// whole response has been read (pos is then just past it).
bool parse(Response& r, const std::string& buf, size_t& pos) {
  constexpr size_t kMaxLine = 16384;
  auto line = [&](std::string_view& out) -> int {  // 1 = got a line, 0 = need more, -1 = error
    size_t e = buf.find("\r\n", pos);
    if (e == std::string::npos) return buf.size() - pos > kMaxLine ? -1 : 0;
    out = std::string_view(buf).substr(pos, e - pos);
    pos = e + 2;
    return 1;
  };
  for (;;) {
    std::string_view l;
    int got;
    switch (r.st) {
      case Response::St::kStatus:
        if ((got = line(l)) <= 0) return got == 0;
        if (l.size() < 12 || l.substr(0, 7) != "HTTP/1." || l[8] != ' ' || !std::isdigit(static_cast<unsigned char>(l[9])) ||
            !std::isdigit(static_cast<unsigned char>(l[10])) || !std::isdigit(static_cast<unsigned char>(l[11])))
          return false;
        r.http10 = l[7] == '0';
        r.status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        r.st = Response::St::kHeaders;
        break;
      case Response::St::kHeaders: {
        if ((got = line(l)) <= 0) return got == 0;
        if (l.empty()) {
          if (r.status >= 100 && r.status < 200 && r.status != 101) {  // interim response
            r.reset();
            break;
          }
          if (r.http10 && !r.keep_alive10) r.close = true;
          if (r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200)) {
            r.st = Response::St::kDone;
          } else if (r.chunked) {
            r.st = Response::St::kChunkSize;
          } else if (r.has_length) {
            r.st = r.remaining ? Response::St::kBody : Response::St::kDone;
          } else {
            r.close = true;
            r.st = Response::St::kUntilClose;
          }
          break;
        }
        size_t colon = l.find(':');
        if (colon == std::string_view::npos || colon == 0) return false;
        std::string_view name = l.substr(0, colon), value = trim(l.substr(colon + 1));
        if (iequals(name, "content-length")) {
          if (value.empty()) return false;
          uint64_t v = 0;
          for (char ch : value) {
            if (!std::isdigit(static_cast<unsigned char>(ch)) || v > (uint64_t{1} << 50)) return false;
            v = v * 10 + static_cast<uint64_t>(ch - '0');
          }
          if (r.has_length && v != r.remaining) return false;
          r.has_length = true;
          r.remaining = v;
        } else if (iequals(name, "transfer-encoding")) {
          r.chunked = icontains(value, "chunked");
        } else if (iequals(name, "connection")) {
          if (icontains(value, "close")) r.close = true;
          if (icontains(value, "keep-alive")) r.keep_alive10 = true;
        } else if (iequals(name, "set-cookie")) {
          r.set_cookie = true;
        }
        break;
      }
      case Response::St::kBody:
      case Response::St::kChunkData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(r.remaining, buf.size() - pos));
        if (n == 0) return true;
        r.take_body(buf.data() + pos, n);
        pos += n;
        r.remaining -= n;
        if (r.remaining == 0)
          r.st = r.st == Response::St::kBody ? Response::St::kDone : Response::St::kChunkCrlf;
        break;
      }
      case Response::St::kChunkSize: {
        if ((got = line(l)) <= 0) return got == 0;
        size_t semi = l.find(';');
        std::string_view hex = trim(l.substr(0, semi));
        if (hex.empty() || hex.size() > 12) return false;
        uint64_t v = 0;
        for (char ch : hex) {
          int d = std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0'
                  : (ch >= 'a' && ch <= 'f')                   ? ch - 'a' + 10
                  : (ch >= 'A' && ch <= 'F')                   ? ch - 'A' + 10
                                                               : -1;
          if (d < 0) return false;
          v = v * 16 + static_cast<uint64_t>(d);
        }
        r.remaining = v;
        r.st = v ? Response::St::kChunkData : Response::St::kTrailers;
        break;
      }
      case Response::St::kChunkCrlf:
        if (buf.size() - pos < 2) return true;
        if (buf.compare(pos, 2, "\r\n") != 0) return false;
        pos += 2;
        r.st = Response::St::kChunkSize;
        break;
      case Response::St::kTrailers:
        if ((got = line(l)) <= 0) return got == 0;
        if (l.empty()) r.st = Response::St::kDone;
        break;
      case Response::St::kUntilClose:
        r.take_body(buf.data() + pos, buf.size() - pos);
        pos = buf.size();
        return true;
      case Response::St::kDone:
        return true;
    }
  }
}

// ---- options ----------------------------------------------------------------------------------
struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  double rate = 0;
  int connections = 50;
  double duration = 10, warmup = 1, grace = 2;
  std::string path;
  std::vector<std::string> headers;
  bool handshake = false, timeline = false;
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "fixed_rate: %s\n", msg);
  std::fprintf(stderr,
               "usage: fixed_rate --port P --rate R [--connections C] [--duration 10s] [--warmup 1s]\n"
               "         [--grace 2s] [--host 127.0.0.1] [--timeline] (--path PATH [--header 'Name: value']...\n"
               "         | --handshake [--path PATH])\n");
  std::exit(2);
}

double parse_seconds(const char* s) {  // "10", "10s", "500ms", "1m"
  char* end = nullptr;
  double v = std::strtod(s, &end);
  std::string_view unit(end);
  if (end == s || !(v >= 0)) usage("bad duration");
  if (unit == "ms") v /= 1000;
  else if (unit == "m") v *= 60;
  else if (!unit.empty() && unit != "s") usage("bad duration unit (s, ms, m)");
  return v;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool path_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = std::atoi(val());
    else if (a == "--rate") o.rate = std::strtod(val(), nullptr);
    else if (a == "--connections") o.connections = std::atoi(val());
    else if (a == "--duration") o.duration = parse_seconds(val());
    else if (a == "--warmup") o.warmup = parse_seconds(val());
    else if (a == "--grace") o.grace = parse_seconds(val());
    else if (a == "--path") { o.path = val(); path_set = true; }
    else if (a == "--header") o.headers.emplace_back(val());
    else if (a == "--handshake") o.handshake = true;
    else if (a == "--timeline") o.timeline = true;
    else if (a == "-h" || a == "--help") usage(nullptr);
    else usage("unknown argument");
  }
  if (o.host != "127.0.0.1") usage("only --host 127.0.0.1 is allowed");
  if (o.port <= 0 || o.port > 65535) usage("--port is required (1..65535)");
  if (!(o.rate > 0 && o.rate <= 1e6)) usage("--rate is required (0 < R <= 1e6 requests/s)");
  if (o.connections < 1 || o.connections > 10000) usage("--connections must be 1..10000");
  if (!(o.duration > 0 && o.duration <= 3600)) usage("--duration must be > 0 and <= 1h");
  if (o.warmup > 600 || o.grace > 60) usage("--warmup <= 600s, --grace <= 60s");
  if (o.handshake && !path_set) o.path = "/socket.io/?EIO=4&transport=polling";
  if (o.path.empty() || o.path[0] != '/') usage("--path is required and must start with /");
  if (o.handshake && (o.path.find("?sid=") != std::string::npos || o.path.find("&sid=") != std::string::npos))
    usage("--handshake requests carry no sid");
  auto bad = [](const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; };
  if (bad(o.path)) usage("CR/LF in --path");
  for (auto& h : o.headers)
    if (bad(h) || h.find(':') == std::string::npos) usage("--header must be 'Name: value' on one line");
  return o;
}

// ---- load generator ---------------------------------------------------------------------------
struct Conn;

struct Gen {
  Options o;
  uv_loop_t* loop = nullptr;
  sockaddr_in addr{};
  std::string request;
  std::vector<Conn*> conns;
  int tfd = -1;
  uv_poll_t tick{};
  uv_timer_t setup_timer{}, stop_timer{};
  bool started = false, stopping = false, done = false;
  int connected = 0;
  uint64_t t0 = 0, w0 = 0, w1 = 0;  // schedule start, measured window [w0, w1)
  uint64_t total = 0;               // requests scheduled over warmup + duration
  uint64_t due = 0;                 // requests 0..due-1 are due (sent or waiting on a connection)
  uint64_t scheduled_measured = 0, recorded = 0, lost_measured = 0;
  uint64_t completed_all = 0, completed_in_window = 0;
  uint64_t non2xx = 0, bad_body = 0, set_cookie = 0;
  uint64_t err_connect = 0, err_read = 0, err_write = 0, err_parse = 0, err_closed = 0;
  uint64_t reconnects = 0, max_backlog = 0;
  struct Slice {
    uint64_t n = 0, max = 0;
    long double sum = 0;
  };
  std::vector<Slice> slices;  // --timeline: one per 100 ms of the measured window
  Histogram latency, sched_lag;

  uint64_t intended(uint64_t i) const {
    return t0 + static_cast<uint64_t>(std::llroundl(static_cast<long double>(i) * 1e9L / o.rate));
  }
  bool measured(uint64_t i) const {
    uint64_t t = intended(i);
    return t >= w0 && t < w1;
  }
};
Gen g;

struct Conn {
  size_t id = 0;
  uv_tcp_t tcp{};
  uv_connect_t creq{};
  uv_write_t wreq{};
  uv_timer_t retry{};
  bool connected = false, inflight = false, closing = false;
  uint64_t next = 0;       // index of this connection's next request (id, id + C, ...)
  uint64_t cur = 0;        // index of the request in flight
  std::string in;
  size_t pos = 0;
  Response resp;
};

void start_connect(Conn* c);
void maybe_finish();
void start_schedule();
void finish();

void on_closed(uv_handle_t* h) {
  auto* c = static_cast<Conn*>(h->data);
  c->closing = false;
  if (!g.stopping) {
    ++g.reconnects;
    start_connect(c);
  }
}

// Drops the connection (the request in flight, if any, is lost and counted in `counter`) and
// reconnects. A keep-alive connection the server closes while idle costs nothing.
void drop(Conn* c, uint64_t* counter) {
  if (c->closing) return;
  if (c->inflight) {
    if (counter) ++*counter;
    if (g.started && g.measured(c->cur)) ++g.lost_measured;
    c->inflight = false;
  }
  if (c->connected) --g.connected;
  c->connected = false;
  c->closing = true;
  c->in.clear();
  c->pos = 0;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
  maybe_finish();
}

void on_write(uv_write_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (status < 0 && status != UV_ECANCELED) drop(c, &g.err_write);
}

void pump(Conn* c) {  // send this connection's next request if it is due and the connection free
  if (!g.started || g.stopping || !c->connected || c->inflight || c->closing || c->next >= g.due) return;
  uint64_t backlog = (g.due - c->next + g.o.connections - 1) / g.o.connections;
  g.max_backlog = std::max(g.max_backlog, backlog);
  c->cur = c->next;
  c->next += static_cast<uint64_t>(g.o.connections);
  c->inflight = true;
  c->resp.reset();
  auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
  uv_buf_t b = uv_buf_init(g.request.data(), static_cast<unsigned>(g.request.size()));
  int r = uv_try_write(stream, &b, 1);
  if (r == static_cast<int>(g.request.size())) return;
  if (r < 0 && r != UV_EAGAIN) {
    drop(c, &g.err_write);
    return;
  }
  size_t off = r > 0 ? static_cast<size_t>(r) : 0;
  uv_buf_t rest = uv_buf_init(g.request.data() + off, static_cast<unsigned>(g.request.size() - off));
  c->wreq.data = c;
  if (uv_write(&c->wreq, stream, &rest, 1, on_write) != 0) drop(c, &g.err_write);
}

void complete(Conn* c) {
  uint64_t t = now_ns();
  const Response& r = c->resp;
  ++g.completed_all;
  if (t >= g.w0 && t < g.w1) ++g.completed_in_window;
  if (g.measured(c->cur)) {
    uint64_t due_at = g.intended(c->cur);
    g.latency.add(t > due_at ? t - due_at : 0);
    ++g.recorded;
    if (g.o.timeline) {
      size_t k = static_cast<size_t>((due_at - g.w0) / 100000000ull);
      if (k >= g.slices.size()) g.slices.resize(k + 1);
      uint64_t v = t > due_at ? t - due_at : 0;
      auto& sl = g.slices[k];
      ++sl.n;
      sl.max = std::max(sl.max, v);
      sl.sum += static_cast<long double>(v);
    }
    if (r.status < 200 || r.status > 299) ++g.non2xx;
    if (g.o.handshake) {
      if (r.body_head.rfind("0{\"sid\":\"", 0) != 0) ++g.bad_body;
      if (r.set_cookie) ++g.set_cookie;
    }
  }
  c->inflight = false;
}

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  static char slab[65536];
  *buf = uv_buf_init(slab, sizeof slab);
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  if (nread == 0) return;
  if (nread < 0) {
    if (c->inflight && c->resp.st == Response::St::kUntilClose && nread == UV_EOF) {
      complete(c);
      drop(c, nullptr);
      maybe_finish();
      return;
    }
    drop(c, nread == UV_EOF ? &g.err_closed : &g.err_read);
    return;
  }
  if (!c->inflight) {  // bytes nobody asked for
    ++g.err_parse;
    drop(c, nullptr);
    return;
  }
  c->in.append(buf->base, static_cast<size_t>(nread));
  if (!parse(c->resp, c->in, c->pos)) {
    drop(c, &g.err_parse);
    return;
  }
  if (c->resp.st != Response::St::kDone) {
    if (c->pos > 65536) {  // keep the buffer small while a long body streams in
      c->in.erase(0, c->pos);
      c->pos = 0;
    }
    return;
  }
  bool extra = c->pos < c->in.size(), close = c->resp.close;
  complete(c);
  c->in.clear();
  c->pos = 0;
  if (extra) {  // no pipelining: nothing may follow the response
    ++g.err_parse;
    drop(c, nullptr);
  } else if (close) {
    drop(c, nullptr);
  } else {
    pump(c);
  }
  maybe_finish();
}

void on_retry(uv_timer_t* t) { start_connect(static_cast<Conn*>(t->data)); }

void on_connect(uv_connect_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (status < 0) {
    if (status == UV_ECANCELED) return;
    ++g.err_connect;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
      auto* cc = static_cast<Conn*>(h->data);
      cc->closing = false;
      if (!g.stopping) uv_timer_start(&cc->retry, on_retry, 10, 0);  // back off 10 ms
    });
    return;
  }
  c->connected = true;
  ++g.connected;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
  if (!g.started && g.connected == static_cast<int>(g.conns.size())) start_schedule();
  pump(c);
}

void start_connect(Conn* c) {
  uv_tcp_init(g.loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  int r = uv_tcp_connect(&c->creq, &c->tcp, reinterpret_cast<const sockaddr*>(&g.addr), on_connect);
  if (r != 0) {
    ++g.err_connect;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
      auto* cc = static_cast<Conn*>(h->data);
      cc->closing = false;
      if (!g.stopping) uv_timer_start(&cc->retry, on_retry, 10, 0);
    });
  }
}

void arm(uint64_t at) {
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(at / 1000000000ull);
  its.it_value.tv_nsec = static_cast<long>(at % 1000000000ull);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, nullptr);
}

void on_tick(uv_poll_t*, int, int) {
  uint64_t expirations;
  if (read(g.tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) return;
  if (g.stopping || g.due >= g.total) return;
  uint64_t t = now_ns();
  uint64_t due = t < g.t0 ? 0 : static_cast<uint64_t>(static_cast<long double>(t - g.t0) * g.o.rate / 1e9L) + 1;
  due = std::min(due, g.total);
  while (due < g.total && g.intended(due) <= t) ++due;  // rounding
  uint64_t first = g.due;
  for (uint64_t i = first; i < due; ++i) {
    if (g.measured(i)) {
      ++g.scheduled_measured;
      uint64_t due_at = g.intended(i);
      g.sched_lag.add(t > due_at ? t - due_at : 0);
    }
  }
  g.due = due;
  uint64_t n = std::min<uint64_t>(due - first, g.conns.size());
  for (uint64_t k = 0; k < n; ++k) pump(g.conns[(first + k) % g.conns.size()]);
  if (g.due < g.total) arm(g.intended(g.due));
  maybe_finish();
}

void on_stop(uv_timer_t*) { finish(); }

void start_schedule() {
  if (g.started) return;
  g.started = true;
  uv_timer_stop(&g.setup_timer);
  g.t0 = now_ns() + 1000000;  // 1 ms from now
  g.w0 = g.t0 + static_cast<uint64_t>(g.o.warmup * 1e9);
  g.w1 = g.w0 + static_cast<uint64_t>(g.o.duration * 1e9);
  g.total = static_cast<uint64_t>(std::ceil((g.o.warmup + g.o.duration) * g.o.rate));
  while (g.total > 0 && g.intended(g.total - 1) >= g.w1) --g.total;
  while (g.intended(g.total) < g.w1) ++g.total;
  arm(g.t0);
  uint64_t stop_ms = static_cast<uint64_t>((g.o.warmup + g.o.duration + g.o.grace) * 1000) + 2;
  uv_timer_start(&g.stop_timer, on_stop, stop_ms, 0);
}

void maybe_finish() {  // everything scheduled has been answered (or lost): stop early
  if (!g.started || g.stopping || g.due < g.total) return;
  for (Conn* c : g.conns)
    if (c->inflight || c->next < g.total) return;
  finish();
}

void finish() {
  if (g.stopping) return;
  g.stopping = true;
  uint64_t unfinished = g.scheduled_measured - std::min(g.scheduled_measured, g.recorded + g.lost_measured);
  uint64_t errors = g.err_connect + g.err_read + g.err_write + g.err_parse + g.err_closed;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  const Histogram& h = g.latency;
  std::fprintf(stderr, "fixed_rate: %s http://127.0.0.1:%d%s, %g req/s over %d connections, warm-up %gs, measured %gs\n",
               g.o.handshake ? "handshakes" : "requests", g.o.port, g.o.path.c_str(), g.o.rate,
               g.o.connections, g.o.warmup, g.o.duration);
  std::fprintf(stderr, "  latency distribution (ms, from the intended send time):\n");
  for (double p : {50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0})
    std::fprintf(stderr, "  %7.3f%%  %10.3f\n", p, ms(p == 100.0 ? h.max : h.percentile(p)));
  std::fprintf(stderr, "  scheduler lag (generator's own timing) p99 %.3f ms, max %.3f ms; max backlog on one connection %llu\n",
               ms(g.sched_lag.percentile(99)), ms(g.sched_lag.max), static_cast<unsigned long long>(g.max_backlog));
  if (g.o.timeline) {
    std::fprintf(stderr, "  timeline (intended send time s: requests, mean ms, max ms):\n");
    for (size_t k = 0; k < g.slices.size(); ++k) {
      const auto& sl = g.slices[k];
      std::fprintf(stderr, "  %6.1f  %7llu  %10.3f  %10.3f\n", static_cast<double>(k) / 10.0,
                   static_cast<unsigned long long>(sl.n), sl.n ? static_cast<double>(sl.sum / sl.n) / 1e6 : 0.0,
                   ms(sl.max));
    }
  }
  if (unfinished) std::fprintf(stderr, "  WARNING: %llu measured requests never answered (percentiles are then optimistic)\n",
                               static_cast<unsigned long long>(unfinished));
  std::printf("RESULT target_rps=%g achieved_rps=%.1f duration_s=%g connections=%d requests=%llu "
              "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p99.9_ms=%.3f max_ms=%.3f mean_ms=%.3f "
              "errors=%llu non2xx=%llu unfinished=%llu",
              g.o.rate, static_cast<double>(g.completed_in_window) / g.o.duration, g.o.duration,
              g.o.connections, static_cast<unsigned long long>(g.recorded), ms(h.percentile(50)),
              ms(h.percentile(90)), ms(h.percentile(99)), ms(h.percentile(99.9)), ms(h.max), h.mean() / 1e6,
              static_cast<unsigned long long>(errors), static_cast<unsigned long long>(g.non2xx),
              static_cast<unsigned long long>(unfinished));
  if (g.o.handshake)
    std::printf(" bad_body=%llu set_cookie=%llu", static_cast<unsigned long long>(g.bad_body),
                static_cast<unsigned long long>(g.set_cookie));
  std::printf(" err_connect=%llu err_read=%llu err_write=%llu err_parse=%llu err_closed=%llu reconnects=%llu "
              "completed_all=%llu sched_lag_p99_ms=%.3f sched_lag_max_ms=%.3f gen_cpu_s=%.2f\n",
              static_cast<unsigned long long>(g.err_connect), static_cast<unsigned long long>(g.err_read),
              static_cast<unsigned long long>(g.err_write), static_cast<unsigned long long>(g.err_parse),
              static_cast<unsigned long long>(g.err_closed), static_cast<unsigned long long>(g.reconnects),
              static_cast<unsigned long long>(g.completed_all), ms(g.sched_lag.percentile(99)),
              ms(g.sched_lag.max), cpu);
  std::fflush(stdout);
  g.done = true;
  uv_stop(g.loop);
}

}  // namespace

int main(int argc, char** argv) {
  g.o = parse_args(argc, argv);
  // Hard bound even if the loop wedges: SIGALRM's default action ends the process.
  alarm(static_cast<unsigned>(g.o.warmup + g.o.duration + g.o.grace) + 10);
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // 1 us timer slack (default 50 us)

  g.request = "GET " + g.o.path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(g.o.port) + "\r\n";
  for (auto& h : g.o.headers) g.request += h + "\r\n";
  g.request += "\r\n";

  g.loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", g.o.port, &g.addr);
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (g.tfd < 0) {
    std::perror("timerfd_create");
    return 1;
  }
  uv_poll_init(g.loop, &g.tick, g.tfd);
  uv_poll_start(&g.tick, UV_READABLE, on_tick);
  uv_timer_init(g.loop, &g.setup_timer);
  uv_timer_init(g.loop, &g.stop_timer);

  for (int i = 0; i < g.o.connections; ++i) {
    auto* c = new Conn;
    c->id = static_cast<size_t>(i);
    c->next = static_cast<uint64_t>(i);
    uv_timer_init(g.loop, &c->retry);
    c->retry.data = c;
    g.conns.push_back(c);
  }
  for (Conn* c : g.conns) start_connect(c);
  // Start the schedule when every connection is up, or after 2 s with whatever is connected
  // (the rest keep retrying; their requests wait on them, which the latencies show).
  uv_timer_start(&g.setup_timer, [](uv_timer_t*) { start_schedule(); }, 2000, 0);

  uv_run(g.loop, UV_RUN_DEFAULT);
  return g.done && g.recorded > 0 ? 0 : 1;
}
