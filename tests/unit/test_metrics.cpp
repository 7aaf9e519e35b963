#include <doctest/doctest.h>

#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "stickyd/metrics.hpp"

using namespace stickyd;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const std::string& l : lines_of(text))
    if (l == line) return true;
  return false;
}

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

// A strict reading of text format 0.0.4: every sample belongs to a family announced by
// HELP and TYPE before it, families are contiguous, label values use only the three escapes,
// values are floats. Returns "" or the first problem.
std::string validate_exposition(const std::string& text) {
  if (text.empty() || text.back() != '\n') return "must end with a newline";
  std::map<std::string, std::string> types;
  std::set<std::string> closed;  // families whose samples ended
  std::string current;
  for (const std::string& l : lines_of(text)) {
    if (l.rfind("# HELP ", 0) == 0) continue;
    if (l.rfind("# TYPE ", 0) == 0) {
      std::istringstream in(l.substr(7));
      std::string name, type;
      in >> name >> type;
      if (types.count(name)) return "second TYPE for " + name;
      if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
          type != "untyped")
        return "bad type: " + l;
      types[name] = type;
      if (!current.empty()) closed.insert(current);
      current = name;
      continue;
    }
    if (l.empty() || l[0] == '#') return "unexpected line: " + l;
    size_t i = 0;
    while (i < l.size() && name_char(l[i], i == 0)) ++i;
    if (i == 0) return "no metric name: " + l;
    std::string name = l.substr(0, i);
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          types.count(name.substr(0, name.size() - s.size())) &&
          types[name.substr(0, name.size() - s.size())] == "histogram")
        family = name.substr(0, name.size() - s.size());
    }
    if (!types.count(family)) return "sample before its TYPE: " + l;
    if (family != current || closed.count(family)) return "family not contiguous: " + l;
    if (i < l.size() && l[i] == '{') {
      ++i;
      while (i < l.size() && l[i] != '}') {
        size_t s = i;
        while (i < l.size() && name_char(l[i], i == s)) ++i;
        if (i == s || i + 1 >= l.size() || l[i] != '=' || l[i + 1] != '"')
          return "bad label: " + l;
        i += 2;
        while (i < l.size() && l[i] != '"') {
          if (l[i] == '\\') {
            if (i + 1 >= l.size() || (l[i + 1] != '\\' && l[i + 1] != '"' && l[i + 1] != 'n'))
              return "bad escape: " + l;
            ++i;
          }
          ++i;
        }
        if (i >= l.size()) return "unterminated label value: " + l;
        ++i;
        if (i < l.size() && l[i] == ',') ++i;
      }
      if (i >= l.size()) return "unterminated labels: " + l;
      ++i;
    }
    if (i >= l.size() || l[i] != ' ') return "no space before value: " + l;
    std::string value = l.substr(i + 1);
    if (value != "+Inf" && value != "-Inf" && value != "NaN") {
      size_t used = 0;
      try {
        (void)std::stod(value, &used);
      } catch (...) {
        return "bad value: " + l;
      }
      if (used != value.size()) return "bad value: " + l;
    }
  }
  return "";
}

}  // namespace

TEST_CASE("metrics: counters by backend and class, local codes, exact lines") {
  std::vector<std::string> names = {"n1", "n2"};
  Metrics m(2, names);
  m.response(0, 200);
  m.response(0, 204);
  m.response(0, 503);
  m.response(1, 101);
  m.response(1, 99);    // no class: ignored
  m.response(1, 600);   // no class: ignored
  m.response(7, 200);   // unknown backend: ignored
  m.response(-1, 200);  // not routed: ignored
  m.local_response(0, 502);
  m.local_response(-1, 400);
  m.local_response(-1, 503);
  m.bytes_to_client(0, 100);
  m.bytes_to_client(0, 23);
  m.bytes_to_backend(1, 7);
  m.handshake(1);
  m.handshake(-1);
  m.tunnel_opened(1);
  m.tunnel_opened(1);
  m.tunnel_closed(1);
  m.backend_connection(0);
  m.backend_connection(0);
  m.backend_connect_failed(0);
  m.health_transition(1, false);
  m.health_transition(1, true);
  m.health_transition(1, false);
  m.client_opened();
  m.client_opened();
  m.client_closed();
  m.set_affinity(42, 50, 5, 3, 2);

  CHECK(m.backend(0).responses[1] == 2);
  CHECK(m.backend(0).responses[4] == 1);
  CHECK(m.backend(1).responses[0] == 1);
  CHECK(m.local_responses(400) == 1);
  CHECK(m.local_responses(502) == 1);
  CHECK(m.handshakes() == 2);

  std::string out;
  m.render_prometheus(out);
  CHECK(validate_exposition(out) == "");
  CHECK(has_line(out, "# HELP stickyd_backend_requests_total Responses relayed from the backend, by status class."));
  CHECK(has_line(out, "# TYPE stickyd_backend_requests_total counter"));
  CHECK(has_line(out, "stickyd_backend_requests_total{backend=\"n1\",class=\"1xx\"} 0"));
  CHECK(has_line(out, "stickyd_backend_requests_total{backend=\"n1\",class=\"2xx\"} 2"));
  CHECK(has_line(out, "stickyd_backend_requests_total{backend=\"n1\",class=\"5xx\"} 1"));
  CHECK(has_line(out, "stickyd_backend_requests_total{backend=\"n2\",class=\"1xx\"} 1"));
  CHECK(has_line(out, "stickyd_backend_requests_total{backend=\"n2\",class=\"2xx\"} 0"));
  CHECK(has_line(out, "stickyd_backend_local_errors_total{backend=\"n1\"} 1"));
  CHECK(has_line(out, "stickyd_backend_local_errors_total{backend=\"n2\"} 0"));
  CHECK(has_line(out, "stickyd_backend_to_client_bytes_total{backend=\"n1\"} 123"));
  CHECK(has_line(out, "stickyd_backend_to_backend_bytes_total{backend=\"n2\"} 7"));
  CHECK(has_line(out, "stickyd_backend_handshakes_total{backend=\"n2\"} 1"));
  CHECK(has_line(out, "# TYPE stickyd_backend_tunnels_open gauge"));
  CHECK(has_line(out, "stickyd_backend_tunnels_open{backend=\"n2\"} 1"));
  CHECK(has_line(out, "stickyd_backend_tunnels_total{backend=\"n2\"} 2"));
  CHECK(has_line(out, "stickyd_backend_connections_total{backend=\"n1\"} 2"));
  CHECK(has_line(out, "stickyd_backend_connect_errors_total{backend=\"n1\"} 1"));
  CHECK(has_line(out, "stickyd_backend_health_transitions_total{backend=\"n2\",to=\"up\"} 1"));
  CHECK(has_line(out, "stickyd_backend_health_transitions_total{backend=\"n2\",to=\"down\"} 2"));
  CHECK(has_line(out, "stickyd_local_responses_total{code=\"400\"} 1"));
  CHECK(has_line(out, "stickyd_local_responses_total{code=\"405\"} 0"));
  CHECK(has_line(out, "stickyd_local_responses_total{code=\"502\"} 1"));
  CHECK(has_line(out, "stickyd_local_responses_total{code=\"503\"} 1"));
  CHECK(has_line(out, "stickyd_local_responses_total{code=\"504\"} 0"));
  CHECK(out.find("code=\"other\"") == std::string::npos);  // only once something counts there
  CHECK(has_line(out, "stickyd_handshakes_total 2"));
  CHECK(has_line(out, "stickyd_sids_learnt_total 50"));
  CHECK(has_line(out, "stickyd_sids_expired_total 5"));
  CHECK(has_line(out, "stickyd_sids_evicted_total 3"));
  CHECK(has_line(out, "stickyd_affinity_sessions 42"));
  CHECK(has_line(out, "stickyd_affinity_pinned_sessions 2"));
  CHECK(has_line(out, "stickyd_client_connections_open 1"));
  CHECK(has_line(out, "stickyd_client_connections_total 2"));
  // No per-backend state without a status list.
  CHECK(out.find("stickyd_backend_state") == std::string::npos);

  m.local_response(-1, 418);
  out.clear();
  m.render_prometheus(out);
  CHECK(has_line(out, "stickyd_local_responses_total{code=\"other\"} 1"));
  CHECK(validate_exposition(out) == "");
}

TEST_CASE("metrics: latency histogram renders cumulative buckets, sum and count") {
  Metrics m(0);
  m.observe_latency(0.001);   // on a bound: le is inclusive
  m.observe_latency(0.003);
  m.observe_latency(0.2);
  m.observe_latency(2.5);
  m.observe_latency(100);     // +Inf only
  m.observe_latency(-1);      // counted as 0
  m.observe_latency(std::numeric_limits<double>::quiet_NaN());  // ignored
  m.observe_latency(std::numeric_limits<double>::infinity());   // ignored
  CHECK(m.latency_count() == 6);
  std::string out;
  m.render_prometheus(out);
  CHECK(validate_exposition(out) == "");
  const char* expected =
      "# HELP stickyd_request_duration_seconds Time from the request's first byte to the end of its response.\n"
      "# TYPE stickyd_request_duration_seconds histogram\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.001\"} 2\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.005\"} 3\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.01\"} 3\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.025\"} 3\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.05\"} 3\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.1\"} 3\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.25\"} 4\n"
      "stickyd_request_duration_seconds_bucket{le=\"0.5\"} 4\n"
      "stickyd_request_duration_seconds_bucket{le=\"1\"} 4\n"
      "stickyd_request_duration_seconds_bucket{le=\"2.5\"} 5\n"
      "stickyd_request_duration_seconds_bucket{le=\"5\"} 5\n"
      "stickyd_request_duration_seconds_bucket{le=\"10\"} 5\n"
      "stickyd_request_duration_seconds_bucket{le=\"30\"} 5\n"
      "stickyd_request_duration_seconds_bucket{le=\"60\"} 5\n"
      "stickyd_request_duration_seconds_bucket{le=\"+Inf\"} 6\n"
      "stickyd_request_duration_seconds_sum 102.704\n"
      "stickyd_request_duration_seconds_count 6\n";
  CHECK(out.find(expected) != std::string::npos);
  if (out.find(expected) == std::string::npos) MESSAGE(out);

  Metrics empty(0);
  out.clear();
  empty.render_prometheus(out);
  CHECK(has_line(out, "stickyd_request_duration_seconds_bucket{le=\"+Inf\"} 0"));
  CHECK(has_line(out, "stickyd_request_duration_seconds_sum 0"));
  CHECK(has_line(out, "stickyd_request_duration_seconds_count 0"));
}

TEST_CASE("metrics: label values are escaped") {
  std::string v;
  append_label_value(v, "a\"b\\c\nd");
  CHECK(v == "a\\\"b\\\\c\\nd");

  std::vector<std::string> names = {"we\"ird\\name\n"};
  Metrics m(1, names);
  m.handshake(0);
  std::vector<BackendStatus> st(1);
  st[0].name = "x\"y";
  st[0].state = "drain";
  st[0].health = "down";
  st[0].weight = 3;
  st[0].effective_weight = 0;
  st[0].sessions = 9;
  std::string out;
  m.render_prometheus(out, st);
  CHECK(validate_exposition(out) == "");
  CHECK(has_line(out, "stickyd_backend_handshakes_total{backend=\"we\\\"ird\\\\name\\n\"} 1"));
  CHECK(has_line(out, "stickyd_backend_state{backend=\"x\\\"y\",state=\"ready\"} 0"));
  CHECK(has_line(out, "stickyd_backend_state{backend=\"x\\\"y\",state=\"drain\"} 1"));
  CHECK(has_line(out, "stickyd_backend_state{backend=\"x\\\"y\",state=\"maint\"} 0"));
  CHECK(has_line(out, "stickyd_backend_health{backend=\"x\\\"y\",health=\"up\"} 0"));
  CHECK(has_line(out, "stickyd_backend_health{backend=\"x\\\"y\",health=\"down\"} 1"));
  CHECK(has_line(out, "stickyd_backend_weight{backend=\"x\\\"y\"} 3"));
  CHECK(has_line(out, "stickyd_backend_effective_weight{backend=\"x\\\"y\"} 0"));
  CHECK(has_line(out, "stickyd_backend_sessions{backend=\"x\\\"y\"} 9"));
}

TEST_CASE("metrics: resize keeps counters by name, or by index without names") {
  std::vector<std::string> names = {"a", "b", "c"};
  Metrics m(3, names);
  m.handshake(0);
  m.handshake(1);
  m.handshake(1);
  m.handshake(2);
  m.handshake(2);
  m.handshake(2);

  // b removed, d added, order changed.
  std::vector<std::string> reloaded = {"c", "a", "d"};
  m.resize(3, reloaded);
  REQUIRE(m.backend_count() == 3);
  CHECK(m.backend_name(0) == "c");
  CHECK(m.backend(0).handshakes == 3);
  CHECK(m.backend(1).handshakes == 1);
  CHECK(m.backend(2).handshakes == 0);
  CHECK(m.handshakes() == 6);  // global counters are untouched

  // Shrink by index: out-of-range updates are ignored.
  m.resize(1);
  REQUIRE(m.backend_count() == 1);
  CHECK(m.backend_name(0) == "0");
  CHECK(m.backend(0).handshakes == 3);
  m.tunnel_opened(2);
  m.response(1, 200);
  std::string out;
  m.render_prometheus(out);
  CHECK(validate_exposition(out) == "");
  CHECK(has_line(out, "stickyd_backend_handshakes_total{backend=\"0\"} 3"));
  CHECK(out.find("backend=\"c\"") == std::string::npos);

  // Grow by index; missing names are the index.
  std::vector<std::string> one = {"solo"};
  m.resize(2, one);
  CHECK(m.backend_name(1) == "1");
  CHECK(m.backend(0).handshakes == 0);  // "0" renamed to "solo": a new series
}

TEST_CASE("metrics: the full page with backend status is valid exposition text") {
  std::vector<std::string> names = {"n1", "n2", "n3"};
  Metrics m(3, names);
  for (int i = 0; i < 1000; ++i) {
    m.response(i % 3, 100 + (i % 5) * 100);
    m.observe_latency(i / 100.0);
  }
  std::vector<BackendStatus> st(3);
  for (size_t i = 0; i < 3; ++i) {
    st[i].name = names[i];
    st[i].state = "ready";
    st[i].health = "unchecked";
  }
  std::string out = "# leading text is kept\n";
  m.render_prometheus(out, st);
  CHECK(out.rfind("# leading text is kept\n", 0) == 0);  // appends
  CHECK(validate_exposition(out.substr(23)) == "");
  CHECK(has_line(out, "stickyd_request_duration_seconds_count 1000"));
  CHECK(has_line(out, "stickyd_request_duration_seconds_bucket{le=\"+Inf\"} 1000"));
  CHECK(has_line(out, "stickyd_backend_health{backend=\"n3\",health=\"unchecked\"} 1"));
}

TEST_CASE("metrics: add() sums another worker's counters and gauges, by backend index") {
  std::vector<std::string> names = {"n1", "n2"};
  Metrics a(2, names), b(2, names), solo(1, names);
  a.response(0, 200);
  a.handshake(0);
  a.tunnel_opened(1);
  a.client_opened();
  a.local_response(1, 502);
  a.observe_latency(0.002);
  b.response(0, 204);
  b.response(1, 404);
  b.tunnel_opened(1);
  b.tunnel_closed(1);
  b.client_opened();
  b.client_opened();
  b.local_response(-1, 400);
  b.observe_latency(0.5);
  a.add(b);
  CHECK(a.backend(0).responses[1] == 2);
  CHECK(a.backend(1).responses[3] == 1);
  CHECK(a.backend(1).tunnels_open == 1);
  CHECK(a.backend(1).tunnels_total == 2);
  CHECK(a.backend(1).local_errors == 1);
  CHECK(a.handshakes() == 1);
  CHECK(a.clients_total() == 3);
  CHECK(a.clients_open() == 3);
  CHECK(a.local_responses(400) == 1);
  CHECK(a.local_responses(502) == 1);
  CHECK(a.latency_count() == 2);
  CHECK(a.latency_sum() == doctest::Approx(0.502));
  // A worker that has not applied a reload yet (fewer backends): what it has is added.
  solo.response(0, 200);
  a.add(solo);
  CHECK(a.backend(0).responses[1] == 3);
}
