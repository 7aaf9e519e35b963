// fuzz_query: split_target, query_param, percent_decode, replace_query_param.
//
// Input: a request-target ("/socket.io/?EIO=4&transport=polling&sid=..."). Bytes after a '\n'
// (when there is one) are the value written by replace_query_param; otherwise a tagged-looking
// value is derived from the target's own sid.
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "stickyd/cookie.hpp"
#include "stickyd/query.hpp"
#include "stickyd/rewrite.hpp"

using namespace stickyd;

namespace {

void check_replace(std::string_view target, std::string_view key, std::string_view value) {
  const RequestTarget t = split_target(target);
  const std::string out = replace_query_param(target, key, value);
  const RequestTarget o = split_target(out);
  // The path is never touched; neither is anything up to the first '?'.
  FUZZ_CHECK(o.path == t.path);
  const size_t q = target.find('?');
  if (q == std::string_view::npos) {
    FUZZ_CHECK(out == target);
    return;
  }
  FUZZ_CHECK(out.compare(0, q + 1, target.substr(0, q + 1)) == 0);
  // Written percent-encoded: no byte that would end or split the query, no CR/LF.
  const std::string enc = encode_uri_component(value);
  FUZZ_CHECK(enc.find_first_of("&#?= \r\n") == std::string::npos);
  // Whatever the backend reads for `key` afterwards is exactly `value`.
  if (query_param(t.query, key)) {
    std::optional<std::string> now = query_param(o.query, key);
    FUZZ_CHECK(now && *now == value);
  }
  // Other parameters keep their values.
  for (std::string_view other : {"EIO", "transport", "t", "b64"}) {
    if (other == key) continue;
    std::optional<std::string> before = query_param(t.query, other);
    std::optional<std::string> after = query_param(o.query, other);
    if (before) FUZZ_CHECK(after && *after == *before);
  }
  // Replacing again with the same value changes nothing more.
  FUZZ_CHECK(replace_query_param(out, key, value) == out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view target = input;
  std::optional<std::string_view> value;
  if (size_t nl = input.find('\n'); nl != std::string_view::npos) {
    target = input.substr(0, nl);
    value = input.substr(nl + 1);
  }

  const RequestTarget t = split_target(target);
  FUZZ_CHECK(fuzz::within(t.path, target) && fuzz::within(t.query, target));
  FUZZ_CHECK(t.path.size() + t.query.size() <= target.size());
  FUZZ_CHECK(t.path.find_first_of("?#") == std::string_view::npos);
  FUZZ_CHECK(t.query.find('#') == std::string_view::npos);
  FUZZ_CHECK(target.substr(0, t.path.size()) == t.path);

  for (bool plus : {true, false}) {
    const std::string d = percent_decode(target, plus);
    FUZZ_CHECK(d.size() <= target.size());
    if (target.find_first_of(plus ? "%+" : "%") == std::string_view::npos) FUZZ_CHECK(d == target);
  }
  // encodeURIComponent then decode is the identity, for any bytes.
  FUZZ_CHECK(percent_decode(encode_uri_component(target), true) == target);

  (void)is_engineio_path(t.path, "/socket.io/");
  for (std::string_view key : {"sid", "EIO", "transport", "t", "", "s%69d"}) {
    std::optional<std::string> v = query_param(t.query, key);
    if (v) FUZZ_CHECK(v->size() <= t.query.size());
  }

  std::optional<std::string> sid = query_param(t.query, "sid");
  check_replace(target, "sid", value ? *value : std::string_view(sid ? *sid : "abc"));
  if (sid && sid->size() > 3) check_replace(target, "sid", std::string_view(*sid).substr(3));
  check_replace(target, "sid", "");
  // The first parameter's (decoded) name, whatever it is.
  std::string_view first = t.query.substr(0, t.query.find_first_of("&="));
  if (!first.empty()) check_replace(target, percent_decode(first, true), value ? *value : "v");
  return 0;
}
