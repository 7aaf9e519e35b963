#include "stickyd/metrics.hpp"

#include <charconv>
#include <cmath>
#include <unordered_map>

#ifndef STICKYD_VERSION
#define STICKYD_VERSION "unknown"
#endif

namespace stickyd {

namespace {

// Bucket bounds exactly as they appear in `le` labels.
constexpr std::array<std::string_view, Metrics::kLatencyBuckets> kLeLabels = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1",     "2.5",   "5",    "10",    "30",    "60",  "+Inf"};

constexpr std::array<std::string_view, BackendCounters::kClasses> kClassLabels = {
    "1xx", "2xx", "3xx", "4xx", "5xx"};

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_i64(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[40];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    out.append(buf, r.ptr);
  }
}

// HELP text escaping: backslash and newline.
void append_help(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

void family(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  append_help(out, help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

struct Label {
  std::string_view name;
  std::string_view value;
};

void series(std::string& out, std::string_view name, std::initializer_list<Label> labels) {
  out += name;
  if (labels.size()) {
    out += '{';
    bool first = true;
    for (const Label& l : labels) {
      if (!first) out += ',';
      first = false;
      out += l.name;
      out += "=\"";
      append_label_value(out, l.value);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
}

void sample_u(std::string& out, std::string_view name, std::initializer_list<Label> labels,
              uint64_t v) {
  series(out, name, labels);
  append_u64(out, v);
  out += '\n';
}

void sample_i(std::string& out, std::string_view name, std::initializer_list<Label> labels,
              int64_t v) {
  series(out, name, labels);
  append_i64(out, v);
  out += '\n';
}

}  // namespace

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

Metrics::Metrics(size_t backends, std::span<const std::string> names) { resize(backends, names); }

void Metrics::resize(size_t n, std::span<const std::string> names) {
  std::vector<std::string> new_names(n);
  for (size_t i = 0; i < n; ++i) new_names[i] = i < names.size() ? names[i] : std::to_string(i);
  std::vector<BackendCounters> fresh(n);
  if (names.empty()) {
    for (size_t i = 0; i < n && i < backends_.size(); ++i) fresh[i] = backends_[i];
  } else {
    std::unordered_map<std::string_view, size_t> old;
    for (size_t i = 0; i < names_.size(); ++i) old.emplace(names_[i], i);
    for (size_t i = 0; i < n; ++i) {
      auto it = old.find(new_names[i]);
      if (it != old.end()) fresh[i] = backends_[it->second];
    }
  }
  backends_ = std::move(fresh);
  names_ = std::move(new_names);
}

void Metrics::add(const Metrics& o) {
  for (size_t b = 0; b < backends_.size() && b < o.backends_.size(); ++b) {
    BackendCounters& c = backends_[b];
    const BackendCounters& d = o.backends_[b];
    for (size_t k = 0; k < BackendCounters::kClasses; ++k) c.responses[k] += d.responses[k];
    c.local_errors += d.local_errors;
    c.bytes_to_client += d.bytes_to_client;
    c.bytes_to_backend += d.bytes_to_backend;
    c.handshakes += d.handshakes;
    c.tunnels_open += d.tunnels_open;
    c.tunnels_total += d.tunnels_total;
    c.connections += d.connections;
    c.connect_errors += d.connect_errors;
    c.health_up += d.health_up;
    c.health_down += d.health_down;
  }
  for (size_t k = 0; k < local_.size(); ++k) local_[k] += o.local_[k];
  handshakes_ += o.handshakes_;
  clients_open_ += o.clients_open_;
  clients_total_ += o.clients_total_;
  for (size_t k = 0; k < latency_.size(); ++k) latency_[k] += o.latency_[k];
  latency_sum_ += o.latency_sum_;
  latency_count_ += o.latency_count_;
}

void Metrics::observe_latency(double seconds) {
  if (!std::isfinite(seconds)) return;
  if (seconds < 0) seconds = 0;
  size_t i = 0;
  while (i < kLatencyBounds.size() && seconds > kLatencyBounds[i]) ++i;  // le: upper inclusive
  ++latency_[i];
  latency_sum_ += seconds;
  ++latency_count_;
}

void Metrics::render_prometheus(std::string& out, std::span<const BackendStatus> status) const {
  out.reserve(out.size() + 2048 + backends_.size() * 2048);
  const size_t nb = backends_.size();

  family(out, "stickyd_build_info", "gauge", "stickyd version.");
  sample_u(out, "stickyd_build_info", {{"version", STICKYD_VERSION}}, 1);

  // ---- per backend counters
  family(out, "stickyd_backend_requests_total", "counter",
         "Responses relayed from the backend, by status class.");
  for (size_t b = 0; b < nb; ++b)
    for (size_t c = 0; c < BackendCounters::kClasses; ++c)
      sample_u(out, "stickyd_backend_requests_total",
               {{"backend", names_[b]}, {"class", kClassLabels[c]}}, backends_[b].responses[c]);

  family(out, "stickyd_backend_local_errors_total", "counter",
         "Requests routed to the backend that stickyd answered itself (502, 504, ...).");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_local_errors_total", {{"backend", names_[b]}},
             backends_[b].local_errors);

  family(out, "stickyd_backend_to_client_bytes_total", "counter",
         "Bytes relayed from the backend to clients.");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_to_client_bytes_total", {{"backend", names_[b]}},
             backends_[b].bytes_to_client);

  family(out, "stickyd_backend_to_backend_bytes_total", "counter",
         "Bytes relayed from clients to the backend.");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_to_backend_bytes_total", {{"backend", names_[b]}},
             backends_[b].bytes_to_backend);

  family(out, "stickyd_backend_handshakes_total", "counter",
         "Engine.IO handshakes sent to the backend.");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_handshakes_total", {{"backend", names_[b]}},
             backends_[b].handshakes);

  family(out, "stickyd_backend_tunnels_open", "gauge", "Open websocket tunnels to the backend.");
  for (size_t b = 0; b < nb; ++b)
    sample_i(out, "stickyd_backend_tunnels_open", {{"backend", names_[b]}},
             backends_[b].tunnels_open);

  family(out, "stickyd_backend_tunnels_total", "counter",
         "Websocket tunnels opened to the backend.");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_tunnels_total", {{"backend", names_[b]}},
             backends_[b].tunnels_total);

  family(out, "stickyd_backend_connections_total", "counter",
         "TCP connections to the backend started.");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_connections_total", {{"backend", names_[b]}},
             backends_[b].connections);

  family(out, "stickyd_backend_connect_errors_total", "counter",
         "TCP connections to the backend that failed to connect.");
  for (size_t b = 0; b < nb; ++b)
    sample_u(out, "stickyd_backend_connect_errors_total", {{"backend", names_[b]}},
             backends_[b].connect_errors);

  family(out, "stickyd_backend_health_transitions_total", "counter",
         "Health state changes of the backend, by new state.");
  for (size_t b = 0; b < nb; ++b) {
    sample_u(out, "stickyd_backend_health_transitions_total",
             {{"backend", names_[b]}, {"to", "up"}}, backends_[b].health_up);
    sample_u(out, "stickyd_backend_health_transitions_total",
             {{"backend", names_[b]}, {"to", "down"}}, backends_[b].health_down);
  }

  // ---- per backend state (from the caller)
  if (!status.empty()) {
    static constexpr std::string_view kStates[] = {"ready", "drain", "maint"};
    static constexpr std::string_view kHealth[] = {"up", "down", "unchecked"};
    family(out, "stickyd_backend_state", "gauge",
           "Administrative state of the backend (1 for the current one).");
    for (const BackendStatus& s : status)
      for (std::string_view st : kStates)
        sample_u(out, "stickyd_backend_state", {{"backend", s.name}, {"state", st}},
                 s.state == st ? 1 : 0);
    family(out, "stickyd_backend_health", "gauge",
           "Health of the backend (1 for the current one).");
    for (const BackendStatus& s : status)
      for (std::string_view h : kHealth)
        sample_u(out, "stickyd_backend_health", {{"backend", s.name}, {"health", h}},
                 s.health == h ? 1 : 0);
    family(out, "stickyd_backend_weight", "gauge", "Configured (or admin-set) weight.");
    for (const BackendStatus& s : status)
      sample_u(out, "stickyd_backend_weight", {{"backend", s.name}}, s.weight);
    family(out, "stickyd_backend_effective_weight", "gauge",
           "Weight the balancer uses now (health, slow start and admin state applied).");
    for (const BackendStatus& s : status)
      sample_u(out, "stickyd_backend_effective_weight", {{"backend", s.name}}, s.effective_weight);
    family(out, "stickyd_backend_sessions", "gauge", "Affinity entries pointing at the backend.");
    for (const BackendStatus& s : status)
      sample_u(out, "stickyd_backend_sessions", {{"backend", s.name}}, s.sessions);
  }

  // ---- global
  family(out, "stickyd_local_responses_total", "counter",
         "Responses stickyd generated itself, by status code.");
  for (size_t i = 0; i < kLocalCodes.size(); ++i) {
    char code[8];
    auto r = std::to_chars(code, code + sizeof code, kLocalCodes[i]);
    sample_u(out, "stickyd_local_responses_total",
             {{"code", std::string_view(code, static_cast<size_t>(r.ptr - code))}}, local_[i]);
  }
  if (local_[kLocalCodes.size()])
    sample_u(out, "stickyd_local_responses_total", {{"code", "other"}}, local_[kLocalCodes.size()]);

  family(out, "stickyd_handshakes_total", "counter", "Engine.IO handshake requests.");
  sample_u(out, "stickyd_handshakes_total", {}, handshakes_);

  family(out, "stickyd_sids_learnt_total", "counter", "Session ids learnt into the affinity table.");
  sample_u(out, "stickyd_sids_learnt_total", {}, sids_learnt_);
  family(out, "stickyd_sids_expired_total", "counter", "Session ids forgotten after idling.");
  sample_u(out, "stickyd_sids_expired_total", {}, sids_expired_);
  family(out, "stickyd_sids_evicted_total", "counter",
         "Session ids evicted because the affinity table was full.");
  sample_u(out, "stickyd_sids_evicted_total", {}, sids_evicted_);
  family(out, "stickyd_affinity_sessions", "gauge", "Entries in the affinity table.");
  sample_u(out, "stickyd_affinity_sessions", {}, affinity_size_);
  family(out, "stickyd_affinity_pinned_sessions", "gauge",
         "Affinity entries pinned by an open long poll or tunnel.");
  sample_u(out, "stickyd_affinity_pinned_sessions", {}, affinity_pinned_);

  family(out, "stickyd_client_connections_open", "gauge", "Open client connections.");
  sample_i(out, "stickyd_client_connections_open", {}, clients_open_);
  family(out, "stickyd_client_connections_total", "counter", "Client connections accepted.");
  sample_u(out, "stickyd_client_connections_total", {}, clients_total_);

  family(out, "stickyd_request_duration_seconds", "histogram",
         "Time from the request's first byte to the end of its response.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    cumulative += latency_[i];
    sample_u(out, "stickyd_request_duration_seconds_bucket", {{"le", kLeLabels[i]}}, cumulative);
  }
  series(out, "stickyd_request_duration_seconds_sum", {});
  append_double(out, latency_sum_);
  out += '\n';
  sample_u(out, "stickyd_request_duration_seconds_count", {}, latency_count_);
}

}  // namespace stickyd
