#include "stickyd/discovery.hpp"

#include <algorithm>
#include <set>

#include "stickyd/log.hpp"

namespace stickyd {

namespace {

const char* type_name(DiscoverType t) {
  switch (t) {
    case DiscoverType::A: return "A";
    case DiscoverType::AAAA: return "AAAA";
    case DiscoverType::SRV: return "SRV";
  }
  return "?";
}

// Key of the persistence values of discovered backends when no sticky.secret is set: opaque
// and the same on every replica, though not secret.
constexpr const char* kUnkeyedDerivation = "stickyd discovered backend";

// Re-resolving sooner than this, whatever the TTL says, would only load the DNS server.
constexpr Millis kMinRefresh{1000};

}  // namespace

std::string discovered_identity(DiscoverType type, const DnsTarget& t) {
  if (type == DiscoverType::SRV) return t.host + ":" + std::to_string(t.port);
  return t.address.text;  // "ip:port" or "[ip]:port", as parse_socket_address writes it
}

std::string discovered_name(const std::string& identity) {
  // host:port -> host_port; IPv6 brackets dropped and its colons made '-'.
  size_t colon = identity.rfind(':');
  std::string host = identity.substr(0, colon);
  std::string port = colon == std::string::npos ? "" : identity.substr(colon + 1);
  std::string out;
  for (char c : host) {
    if (c == '[' || c == ']') continue;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    out += ok ? c : '-';
  }
  if (!port.empty()) out += "_" + port;
  return out;
}

DiscoveredSet::Change DiscoveredSet::apply(const DiscoverConfig& d,
                                           const std::vector<DnsTarget>& targets, int64_t now_ms) {
  Change ch;
  std::map<std::string, const DnsTarget*> seen;  // by identity: duplicates collapse
  for (const DnsTarget& t : targets) seen.emplace(discovered_identity(d.type, t), &t);
  for (auto& [identity, m] : members) {
    auto it = seen.find(identity);
    if (it == seen.end()) {
      if (m.present) {
        m.present = false;
        m.missing_since_ms = now_ms;
        m.idle_since_ms = -1;
        ch.drained.push_back(m.name);
      }
      continue;
    }
    if (!m.present) {
      m.present = true;
      ch.undrained.push_back(m.name);
    }
    if (it->second->address.text != m.target.address.text) ch.moved.push_back(m.name);
    m.target = *it->second;
  }
  for (const auto& [identity, t] : seen) {
    if (members.count(identity)) continue;
    if (members.size() >= d.max) break;  // the first identities in order: every replica agrees
    DiscoveredMember m;
    m.target = *t;
    m.identity = identity;
    m.name = discovered_name(identity);
    members.emplace(identity, m);
    ch.added.push_back(m.name);
  }
  answered = true;
  return ch;
}

// ---------------------------------------------------------------- Discovery

Discovery::Discovery(uv_loop_t* loop, std::function<void()> changed)
    : loop_(loop), changed_(std::move(changed)) {}

Discovery::~Discovery() { stop(); }

void Discovery::stop() {
  for (auto& e : entries_) {
    if (!e->timer) continue;
    e->timer->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(e->timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    e->timer = nullptr;
  }
  entries_.clear();
  resolver_.reset();
}

void Discovery::configure(const Config& cfg) {
  bool same_resolvers = resolver_ && cfg.resolvers.nameservers == resolvers_.nameservers &&
                        cfg.resolvers.timeout == resolvers_.timeout;
  resolvers_ = cfg.resolvers;
  std::vector<std::shared_ptr<Entry>> next;
  for (const DiscoverConfig& d : cfg.discover) {
    std::shared_ptr<Entry> e;
    for (auto& old : entries_)
      if (old && old->config.name == d.name && old->config.type == d.type && old->config.port == d.port) {
        e = std::move(old);  // the same records: keep what is known
        break;
      }
    if (!e) {
      e = std::make_shared<Entry>();
      e->timer = new uv_timer_t;
      uv_timer_init(loop_, e->timer);
    }
    e->config = d;
    e->owner = this;
    e->timer->data = e.get();
    next.push_back(std::move(e));
  }
  for (auto& old : entries_) {
    if (!old || !old->timer) continue;
    old->timer->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(old->timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    old->timer = nullptr;
  }
  entries_ = std::move(next);
  if (entries_.empty()) {
    resolver_.reset();
    return;
  }
  if (!same_resolvers) {
    resolver_ = std::make_unique<DnsResolver>(loop_, resolvers_);  // cancels what was in flight
    if (!resolver_->ok())
      log::error("discovery: resolver unavailable", {{"error", resolver_->init_error()}});
    for (auto& e : entries_) e->in_flight = false;
  }
  for (auto& e : entries_)
    if (!e->in_flight) schedule(*e, Millis(0));
}

void Discovery::schedule(Entry& e, Millis after) {
  if (e.timer) uv_timer_start(e.timer, entry_timer_cb, static_cast<uint64_t>(after.count()), 0);
}

void Discovery::entry_timer_cb(uv_timer_t* t) {
  auto* e = static_cast<Entry*>(t->data);
  if (e) e->owner->run(*e);
}

void Discovery::run(Entry& e) {
  if (!resolver_ || !resolver_->ok()) {
    schedule(e, resolvers_.interval);
    return;
  }
  e.in_flight = true;
  ++lookups_;
  std::weak_ptr<Entry> weak;
  for (auto& p : entries_)
    if (p.get() == &e) weak = p;
  resolver_->lookup(e.config.name, e.config.type, e.config.port,
                    [this, weak](int status, const std::string& error, std::vector<DnsTarget> targets,
                                 uint32_t ttl_s) {
    std::shared_ptr<Entry> ep = weak.lock();
    if (!ep) return;  // the entry was removed by a reload meanwhile
    Entry& e = *ep;
    e.in_flight = false;
    const DiscoverConfig& d = e.config;
    Millis next = resolvers_.interval;
    if (status != 0 || targets.empty()) {
      // Keep the last good set; say so once per change of state. Until a first answer
      // comes, ask again soon (stickyd started while DNS was down).
      if (!e.set.failing)
        log::warn("discovery: lookup failed, keeping the last good set",
                  {{"name", d.name}, {"type", type_name(d.type)},
                   {"error", status != 0 ? error : std::string("empty answer")},
                   {"backends", e.set.members.size()}});
      e.set.failing = true;
      if (!e.set.answered) next = std::min(next, kMinRefresh);
      schedule(e, next);
      return;
    }
    if (e.set.failing)
      log::info("discovery: lookups answer again", {{"name", d.name}, {"type", type_name(d.type)}});
    e.set.failing = false;
    size_t before = e.set.members.size();
    DiscoveredSet::Change ch = e.set.apply(d, targets, static_cast<int64_t>(uv_now(loop_)));
    if (ttl_s > 0) next = std::max(kMinRefresh, std::min(next, Millis(int64_t{ttl_s} * 1000)));
    schedule(e, next);
    size_t distinct = 0;
    {
      std::set<std::string> ids;
      for (const DnsTarget& t : targets) ids.insert(discovered_identity(d.type, t));
      distinct = ids.size();
    }
    if (distinct > d.max && before < d.max)
      log::warn("discovery: more records than max, the first ones by identity kept",
                {{"name", d.name}, {"records", distinct}, {"max", d.max}});
    for (const std::string& n : ch.added) log::info("discovery: backend added", {{"name", d.name}, {"backend", n}});
    for (const std::string& n : ch.drained)
      log::info("discovery: backend left DNS, draining", {{"name", d.name}, {"backend", n}});
    for (const std::string& n : ch.undrained)
      log::info("discovery: backend back in DNS", {{"name", d.name}, {"backend", n}});
    for (const std::string& n : ch.moved)
      log::info("discovery: backend address changed", {{"name", d.name}, {"backend", n}});
    if (ch.any()) changed_();
  });
}

std::vector<BackendConfig> Discovery::backends(const Config& cfg) const {
  std::vector<BackendConfig> out;
  std::set<std::string> names;
  for (const BackendConfig& b : cfg.backends)
    if (b.discover < 0 && !b.removed) names.insert(b.name);
  for (size_t i = 0; i < entries_.size() && i < cfg.discover.size(); ++i) {
    const DiscoverConfig& d = cfg.discover[i];
    for (const auto& [identity, m] : entries_[i]->set.members) {
      if (!names.insert(m.name).second) continue;  // a static backend or another entry has it
      BackendConfig b;
      b.name = m.name;
      b.address = m.target.address;
      b.weight = d.weight;
      b.tls = d.tls;
      if (b.tls.enabled && b.tls.sni.empty() && d.type == DiscoverType::SRV) b.tls.sni = m.target.host;
      // The persistence value: HMAC-derived from the name, with sticky.secret as for static
      // backends, else with a fixed key. Never the name itself: discovered names hold dots
      // (addresses, SRV targets), the default sid tag separator, and would reveal pod
      // addresses to clients. Either way every replica derives the same value.
      b.cookie = derive_cookie_value(cfg.sticky.secret.empty() ? kUnkeyedDerivation : cfg.sticky.secret,
                                     m.name);
      b.discover = static_cast<int>(i);
      b.identity = identity;
      out.push_back(std::move(b));
    }
  }
  return out;
}

bool Discovery::expire(int64_t now_ms, const std::function<bool(const std::string&)>& idle,
                       const std::function<bool(const std::string&)>& down) {
  bool removed = false;
  for (auto& e : entries_) {
    auto& members = e->set.members;
    for (auto it = members.begin(); it != members.end();) {
      DiscoveredMember& m = it->second;
      bool gone = false;
      if (!m.present) {
        if (down(m.name)) {
          gone = true;
        } else if (idle(m.name)) {
          if (m.idle_since_ms < 0) m.idle_since_ms = now_ms;
          gone = now_ms - m.idle_since_ms >= e->config.hold.count();
        } else {
          m.idle_since_ms = -1;
        }
      }
      if (gone) {
        log::info("discovery: backend removed", {{"name", e->config.name}, {"backend", m.name},
                                                 {"after_ms", now_ms - m.missing_since_ms}});
        it = members.erase(it);
        removed = true;
      } else {
        ++it;
      }
    }
  }
  return removed;
}

bool Discovery::draining(const std::string& name) const {
  for (const auto& e : entries_)
    for (const auto& [_, m] : e->set.members)
      if (m.name == name) return !m.present;
  return false;
}

}  // namespace stickyd
