// fuzz_haproxy: `stickyd import-haproxy` on arbitrary bytes. Invariants: no crash, no hang
// (every step consumes input); an error names a line within the input; a successful import
// is YAML that stickyd's own loader reads (it may reject values, never crash), and whose
// every comment stays on one line (a hostile HAProxy line cannot inject YAML).
#include <string>

#include "fuzz_common.hpp"
#include "stickyd/config.hpp"
#include "stickyd/haproxy_import.hpp"

using namespace stickyd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto env = [](std::string_view name) -> std::optional<std::string> {
    if (name == "A") return std::string("127.0.0.1");
    if (name == "NL") return std::string("x\ny: 1");
    return std::nullopt;
  };
  haproxy::ParseResult p = haproxy::parse_haproxy(in, env);
  if (p.error_line) {
    size_t lines = 1;
    for (char c : in) lines += c == '\n';
    FUZZ_CHECK(p.error_line >= 1 && static_cast<size_t>(p.error_line) <= lines);
  }
  haproxy::ImportOptions opts;
  opts.file = "f.cfg";
  haproxy::ImportResult r = haproxy::import_haproxy(in, opts, env);
  if (!r.ok) return 0;
  // Values and comments never carry a raw control byte: a hostile HAProxy line (or variable)
  // cannot start a YAML line of its own.
  for (unsigned char ch : r.yaml) FUZZ_CHECK(ch >= 0x20 || ch == '\n');
  ConfigResult c = load_config_string(r.yaml, "imported.yaml");
  (void)c;
  return 0;
}
