// DnsResolver: c-ares on the libuv loop. c-ares says which sockets it wants watched
// (sock_state_cb); each gets a uv_poll, and one uv_timer follows ares_timeout() for
// retransmissions. Truncated UDP answers are retried over TCP by c-ares itself.
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <type_traits>

#include "stickyd/discovery.hpp"
#include "stickyd/log.hpp"

namespace stickyd {

struct DnsResolver::Poll {
  uv_poll_t handle;
  DnsResolver* owner;
  int fd;
};

// One lookup: for SRV, the SRV query and then one address query per target.
struct DnsResolver::Query {
  DnsResolver* owner;
  std::shared_ptr<bool> alive;
  DiscoverType type;
  uint16_t port;
  Callback cb;
  std::vector<DnsTarget> targets;
  std::vector<std::pair<std::string, uint16_t>> srv;  // target, port
  uint32_t ttl = 0;
  size_t pending = 0;  // SRV: address queries not answered yet
};

namespace {

ares_channel as_channel(ares_channeldata* c) { return c; }

void note_ttl(uint32_t& ttl, int t) {
  if (t <= 0) return;
  if (ttl == 0 || static_cast<uint32_t>(t) < ttl) ttl = static_cast<uint32_t>(t);
}

bool to_address(const char* ip, bool v6, uint16_t port, SocketAddress& out) {
  std::string text = v6 ? "[" + std::string(ip) + "]:" + std::to_string(port)
                        : std::string(ip) + ":" + std::to_string(port);
  return !parse_socket_address(text, out, false).has_value();
}

// The addresses of an A (ares_addrttl) or AAAA (ares_addr6ttl) answer, with `port`. Returns
// false when it is not parsable.
template <typename Rr, typename Parse>
bool parse_addresses_as(Parse parse, int family, const unsigned char* abuf, int alen,
                        const std::string& host, uint16_t port, std::vector<DnsTarget>& out,
                        uint32_t& ttl) {
  constexpr int kMax = 256;
  std::vector<Rr> rr(kMax);
  int n = kMax;
  if (parse(abuf, alen, nullptr, rr.data(), &n) != ARES_SUCCESS) return false;
  char ip[INET6_ADDRSTRLEN];
  for (int i = 0; i < n; ++i) {
    const Rr& r = rr[static_cast<size_t>(i)];
    if constexpr (std::is_same_v<Rr, ares_addrttl>) inet_ntop(family, &r.ipaddr, ip, sizeof ip);
    else inet_ntop(family, &r.ip6addr, ip, sizeof ip);
    DnsTarget t;
    t.host = host.empty() ? ip : host;
    t.port = port;
    if (to_address(ip, family == AF_INET6, port, t.address)) out.push_back(std::move(t));
    note_ttl(ttl, r.ttl);
  }
  return true;
}

bool parse_addresses(const unsigned char* abuf, int alen, bool v6, const std::string& host,
                     uint16_t port, std::vector<DnsTarget>& out, uint32_t& ttl) {
  return v6 ? parse_addresses_as<ares_addr6ttl>(ares_parse_aaaa_reply, AF_INET6, abuf, alen, host, port, out, ttl)
            : parse_addresses_as<ares_addrttl>(ares_parse_a_reply, AF_INET, abuf, alen, host, port, out, ttl);
}

// NXDOMAIN and NODATA are answers (with nothing in them), not failures.
bool empty_answer(int status) { return status == ARES_ENODATA || status == ARES_ENOTFOUND; }

}  // namespace

DnsResolver::DnsResolver(uv_loop_t* loop, const ResolversConfig& cfg) : loop_(loop) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options opts{};
  opts.sock_state_cb = [](void* data, ares_socket_t fd, int readable, int writable) {
    sock_state_cb(data, fd, readable, writable);
  };
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(cfg.timeout.count());
  opts.tries = 2;
  ares_channel ch = nullptr;
  int r = ares_init_options(&ch, &opts, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
  if (r != ARES_SUCCESS) {
    init_error_ = ares_strerror(r);
    return;
  }
  if (!cfg.nameservers.empty()) {
    std::string csv;
    for (const std::string& ns : cfg.nameservers) {
      if (!csv.empty()) csv += ',';
      csv += ns;
    }
    r = ares_set_servers_ports_csv(ch, csv.c_str());
    if (r != ARES_SUCCESS) {
      init_error_ = std::string("nameservers: ") + ares_strerror(r);
      ares_destroy(ch);
      return;
    }
  }
  channel_ = ch;
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

DnsResolver::~DnsResolver() {
  *alive_ = false;  // callbacks c-ares runs from here on (ARES_EDESTRUCTION) do nothing
  if (channel_) ares_destroy(as_channel(channel_));
  for (auto& [fd, p] : polls_) {
    uv_poll_stop(&p->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
             [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
  }
  polls_.clear();
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void DnsResolver::sock_state_cb(void* data, int fd, int readable, int writable) {
  auto* self = static_cast<DnsResolver*>(data);
  auto it = self->polls_.find(fd);
  if (!readable && !writable) {
    if (it == self->polls_.end()) return;
    Poll* p = it->second;
    self->polls_.erase(it);
    uv_poll_stop(&p->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
             [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
    return;
  }
  Poll* p;
  if (it == self->polls_.end()) {
    p = new Poll{{}, self, fd};
    if (uv_poll_init_socket(self->loop_, &p->handle, fd) != 0) {
      delete p;
      return;
    }
    p->handle.data = p;
    self->polls_[fd] = p;
  } else {
    p = it->second;
  }
  uv_poll_start(&p->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), poll_cb);
}

void DnsResolver::poll_cb(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<Poll*>(h->data);
  DnsResolver* self = p->owner;
  int fd = p->fd;
  // On a poll error let c-ares find the socket's error itself.
  bool r = status < 0 || (events & UV_READABLE);
  bool w = status < 0 || (events & UV_WRITABLE);
  ares_process_fd(as_channel(self->channel_), r ? fd : ARES_SOCKET_BAD, w ? fd : ARES_SOCKET_BAD);
  self->rearm_timer();
}

void DnsResolver::timer_cb(uv_timer_t* t) {
  auto* self = static_cast<DnsResolver*>(t->data);
  ares_process_fd(as_channel(self->channel_), ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  self->rearm_timer();
}

void DnsResolver::rearm_timer() {
  if (!channel_ || !timer_) return;
  timeval tv{};
  timeval* next = ares_timeout(as_channel(channel_), nullptr, &tv);
  if (!next) {
    uv_timer_stop(timer_);
    return;
  }
  uint64_t ms = static_cast<uint64_t>(next->tv_sec) * 1000 + static_cast<uint64_t>(next->tv_usec) / 1000;
  uv_timer_start(timer_, timer_cb, ms + 1, 0);
}

void DnsResolver::lookup(const std::string& name, DiscoverType type, uint16_t port, Callback cb) {
  if (!channel_) {
    cb(ARES_ENOTINITIALIZED, init_error_, {}, 0);
    return;
  }
  auto q = std::make_shared<Query>();
  q->owner = this;
  q->alive = alive_;
  q->type = type;
  q->port = port;
  q->cb = std::move(cb);
  int rr = type == DiscoverType::SRV ? ns_t_srv : type == DiscoverType::AAAA ? ns_t_aaaa : ns_t_a;
  ares_search(as_channel(channel_), name.c_str(), ns_c_in, rr,
              [](void* arg, int status, int, unsigned char* abuf, int alen) {
                std::unique_ptr<std::shared_ptr<Query>> holder(static_cast<std::shared_ptr<Query>*>(arg));
                std::shared_ptr<Query> q = *holder;
                if (!*q->alive) return;  // the resolver is being destroyed
                if (empty_answer(status)) return q->cb(0, "", {}, 0);
                if (status != ARES_SUCCESS) return q->cb(status, ares_strerror(status), {}, 0);
                if (q->type == DiscoverType::SRV) return q->owner->read_srv(q, abuf, alen);
                bool v6 = q->type == DiscoverType::AAAA;
                if (!parse_addresses(abuf, alen, v6, "", q->port, q->targets, q->ttl))
                  return q->cb(ARES_EBADRESP, ares_strerror(ARES_EBADRESP), {}, 0);
                q->cb(0, "", std::move(q->targets), q->ttl);
              },
              new std::shared_ptr<Query>(q));
  rearm_timer();
}

// An SRV answer: its targets (lowercase, no trailing dot) and ports, then their addresses.
void DnsResolver::read_srv(std::shared_ptr<Query> q, const unsigned char* abuf, int alen) {
  ares_srv_reply* srv = nullptr;
  int r = ares_parse_srv_reply(abuf, alen, &srv);
  if (r != ARES_SUCCESS) return q->cb(r, ares_strerror(r), {}, 0);
  for (ares_srv_reply* s = srv; s; s = s->next) {
    std::string host = s->host;
    std::transform(host.begin(), host.end(), host.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    while (!host.empty() && host.back() == '.') host.pop_back();
    q->srv.emplace_back(host, s->port);
  }
  ares_free_data(srv);
  resolve_targets(std::move(q));
}

// Each SRV target's address: its A records, else its AAAA records (the first address is the
// backend's; a pod has one).
struct DnsResolver::TargetQuery {
  std::shared_ptr<Query> q;
  size_t index;
  bool v6;
};

void DnsResolver::resolve_targets(std::shared_ptr<Query> q) {
  if (q->srv.empty()) return q->cb(0, "", {}, 0);
  q->pending = q->srv.size();
  for (size_t i = 0; i < q->srv.size(); ++i) ask_target(new TargetQuery{q, i, false});
  rearm_timer();
}

void DnsResolver::ask_target(TargetQuery* target) {
  const std::string& host = target->q->srv[target->index].first;
  ares_query(as_channel(target->q->owner->channel_), host.c_str(), ns_c_in,
             target->v6 ? ns_t_aaaa : ns_t_a,
             [](void* arg, int status, int, unsigned char* abuf, int alen) {
               std::unique_ptr<TargetQuery> t(static_cast<TargetQuery*>(arg));
               std::shared_ptr<Query> q = t->q;
               if (!*q->alive) return;
               const auto& [host, port] = q->srv[t->index];
               std::vector<DnsTarget> found;
               if (status == ARES_SUCCESS) parse_addresses(abuf, alen, t->v6, host, port, found, q->ttl);
               if (found.empty() && !t->v6 && status != ARES_EDESTRUCTION && status != ARES_ECANCELLED) {
                 t->v6 = true;  // no A record: its AAAA ones
                 ask_target(t.release());
                 return;
               }
               if (!found.empty()) q->targets.push_back(std::move(found.front()));  // one per target
               if (--q->pending == 0) q->cb(0, "", std::move(q->targets), q->ttl);
             },
             target);
}

}  // namespace stickyd
