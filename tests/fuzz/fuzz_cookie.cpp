// fuzz_cookie: find_cookie, parse_set_cookie_pair, serialize_set_cookie, edit_cookie_header.
//
// Input: the cookie name on the first line, the header after the first '\n' (no '\n': the
// whole input is the header and the name is "io"). The header is used both as a request
// `Cookie` value and as a response `Set-Cookie` value.
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "stickyd/config.hpp"
#include "stickyd/cookie.hpp"
#include "stickyd/rewrite.hpp"

using namespace stickyd;

namespace {

// Strict UTF-8 (no overlongs, surrogates or > U+10FFFF): exactly what decodeURIComponent
// accepts back from encodeURIComponent.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i <= static_cast<size_t>(n)) return false;
    for (int k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

CookieConfig config_variant(uint64_t h) {
  CookieConfig cc;
  cc.inject = true;
  switch (h % 4) {
    case 0:  // cookie: true
      break;
    case 1:
      cc.name = "SERVERID";
      cc.encode = CookieEncode::None;
      cc.path.reset();
      cc.http_only = false;
      cc.same_site = SameSite::Unset;
      break;
    case 2:
      cc.name = "io";
      cc.domain = "example.com";
      cc.secure = true;
      cc.partitioned = true;
      cc.priority = "High";
      cc.same_site = SameSite::None;
      cc.max_age = static_cast<int64_t>(h >> 8) - (int64_t{1} << 40);
      cc.expires = static_cast<int64_t>(h);  // any int64: http_date must cope
      break;
    default:
      cc.name = "a!b#c";
      cc.path = "/socket.io/";
      cc.same_site = SameSite::Strict;
      cc.expires = static_cast<int64_t>(h >> 20);
      break;
  }
  return cc;
}

void check_serialized(const CookieConfig& cc, std::string_view value) {
  std::optional<std::string> out = serialize_set_cookie(cc, value);
  if (!out) return;
  const std::string prefix = cc.name + "=";
  FUZZ_CHECK(out->compare(0, prefix.size(), prefix) == 0);
  const std::string_view rest = std::string_view(*out).substr(prefix.size());
  const std::string_view v = rest.substr(0, rest.find(';'));
  // Never reflect unsafe bytes: the value is cookie-octets only, so no CR, LF, ';' (nor SP,
  // DQUOTE, ',' or '\').
  FUZZ_CHECK(is_cookie_octets(v));
  FUZZ_CHECK(v.find_first_of("\r\n; \",\\") == std::string_view::npos);
  FUZZ_CHECK(out->find_first_of("\r\n") == std::string::npos);
  if (cc.encode == CookieEncode::None) FUZZ_CHECK(v == value);
  // What we set, a client sends back and we read: the same value (when it is text a JS
  // decodeURIComponent accepts).
  if (cc.encode == CookieEncode::Uri && valid_utf8(value)) {
    std::optional<std::string> back = find_cookie(prefix + std::string(v), cc.name);
    FUZZ_CHECK(back && *back == value);
  }
  // The attributes that follow parse as the pair's attributes, not as a second pair.
  std::optional<CookiePair> pair = parse_set_cookie_pair(*out);
  FUZZ_CHECK(pair && pair->name == cc.name && pair->value == v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view name = "io";
  std::string_view header = input;
  if (size_t nl = input.find('\n'); nl != std::string_view::npos) {
    name = input.substr(0, nl);
    header = input.substr(nl + 1);
  }
  const uint64_t h = fuzz::fnv1a(input);

  // ---- request Cookie header
  std::optional<std::string> found = find_cookie(header, name);
  if (found) FUZZ_CHECK(found->size() <= header.size());
  // A second lookup is the same (no hidden state) and a well-formed name is what the router uses.
  FUZZ_CHECK(find_cookie(header, name) == found);
  (void)find_cookie(header, "io");
  (void)find_cookie(header, "SERVERID");

  // ---- edit_cookie_header, as the proxy strips its tag / prefix / server cookie
  std::string removed = edit_cookie_header(header, name, [](std::string_view) { return std::nullopt; });
  FUZZ_CHECK(!find_cookie(removed, name));
  FUZZ_CHECK(removed.size() <= header.size() + header.size() / 2 + 2);
  std::string replaced =
      edit_cookie_header(header, name, [](std::string_view) -> std::optional<std::string> {
        return std::string("X");
      });
  if (found) {
    std::optional<std::string> now = find_cookie(replaced, name);
    FUZZ_CHECK(now && *now == "X");
  }
  std::string same = edit_cookie_header(header, name, [](std::string_view v) -> std::optional<std::string> {
    return std::string(v);
  });
  // (An empty name is exempt: find_cookie ignores any header shorter than 2 bytes, like the
  // `cookie` package, and "=" is a whole pair for it.)
  if (!name.empty()) FUZZ_CHECK(find_cookie(same, name) == found);
  std::string untagged = edit_cookie_header(header, name, [](std::string_view v) -> std::optional<std::string> {
    size_t tilde = v.find('~');
    return std::string(tilde == std::string_view::npos ? v : v.substr(tilde + 1));
  });
  FUZZ_CHECK(untagged.size() <= same.size());

  // ---- response Set-Cookie header
  if (std::optional<CookiePair> pair = parse_set_cookie_pair(header)) {
    FUZZ_CHECK(!pair->name.empty());
    FUZZ_CHECK(fuzz::within(pair->name, header) && fuzz::within(pair->value, header));
    FUZZ_CHECK(pair->name.find_first_of(";=") == std::string_view::npos);
    FUZZ_CHECK(pair->value.find(';') == std::string_view::npos);
    std::string re = replace_set_cookie_value(header, "abc");
    std::optional<CookiePair> again = parse_set_cookie_pair(re);
    FUZZ_CHECK(again && again->name == pair->name && again->value == "abc");
  }

  // ---- Set-Cookie serialisation of arbitrary values (a sid is whatever a backend chose)
  const CookieConfig cc = config_variant(h);
  check_serialized(cc, header);
  if (found) check_serialized(cc, *found);
  check_serialized(config_variant(h + 1), name);

  // encodeURIComponent output is always cookie-octets.
  FUZZ_CHECK(is_cookie_octets(encode_uri_component(header)));
  (void)http_date(static_cast<int64_t>(h));
  return 0;
}
