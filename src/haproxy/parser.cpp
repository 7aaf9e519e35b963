// HAProxy's configuration syntax (its configuration manual, section 2): a file of sections,
// each a keyword line followed by lines of words. Words are separated by blanks; `\` escapes
// the next character (`\ `, `\#`, `\\`, `\'`, `\"`, `\t`, `\n`, `\r`, `\xNN`); "..." is a weak
// quote (blanks, `#` and `'` lose their meaning, `\` escapes and `$VAR`/`${VAR}` environment
// variables still apply); '...' is a strong quote (nothing inside is interpreted); quoted and
// unquoted pieces next to each other form one word; `#` outside quotes starts a comment; a
// line ending in an unescaped `\` continues on the next one.
#include <cctype>

#include "stickyd/haproxy_import.hpp"

namespace stickyd::haproxy {

namespace {

constexpr size_t kMaxLine = 64 * 1024;  // HAProxy's own limit is far lower; this bounds us
constexpr size_t kMaxWords = 1024;

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_section(const std::string& w) {
  static const char* const kinds[] = {"global",  "defaults", "frontend", "backend",
                                      "listen",  "resolvers", "peers",   "userlist",
                                      "cache",   "program",  "mailers",  "http-errors",
                                      "ring",    "fcgi-app", "crt-store", "traces"};
  for (const char* k : kinds)
    if (w == k) return true;
  return false;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Splits one logical line into words. Returns an error message, or "" on success.
std::string split_words(std::string_view s, const EnvFn& env, std::vector<std::string>& words,
                        std::vector<std::string>& notes) {
  words.clear();
  std::string cur;
  bool in_word = false;
  enum class Quote { None, Weak, Strong } q = Quote::None;
  auto end_word = [&] {
    if (in_word) words.push_back(std::move(cur));
    cur.clear();
    in_word = false;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (q == Quote::Strong) {
      if (c == '\'') q = Quote::None;
      else cur.push_back(c);
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= s.size()) return "a '\\' ends the line";
      char n = s[++i];
      in_word = true;
      switch (n) {
        case 't': cur.push_back('\t'); break;
        case 'n': cur.push_back('\n'); break;
        case 'r': cur.push_back('\r'); break;
        case 'x': {
          if (i + 2 >= s.size()) return "incomplete '\\x' escape";
          int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
          if (hi < 0 || lo < 0) return "invalid '\\x' escape";
          cur.push_back(static_cast<char>(hi * 16 + lo));
          i += 2;
          break;
        }
        default: cur.push_back(n);  // `\ `, `\#`, `\\`, `\'`, `\"`, `\$` and the like
      }
      continue;
    }
    if (q == Quote::Weak) {
      if (c == '"') {
        q = Quote::None;
      } else if (c == '$') {
        // $NAME or ${NAME}: letters, digits and '_', not starting with a digit.
        size_t j = i + 1;
        bool braced = j < s.size() && s[j] == '{';
        if (braced) ++j;
        size_t start = j;
        while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
        std::string_view name = s.substr(start, j - start);
        if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) {
          cur.push_back('$');  // not a variable: a literal dollar
          continue;
        }
        if (braced) {
          if (j >= s.size() || s[j] != '}') return "unterminated '${' in \"...\"";
          ++j;
        }
        if (std::optional<std::string> v = env(name)) {
          cur += *v;
        } else {
          notes.push_back("environment variable " + std::string(name) + " is not set (empty)");
        }
        i = j - 1;
      } else {
        cur.push_back(c);
      }
      continue;
    }
    if (c == '#') break;  // comment
    if (is_blank(c)) {
      end_word();
      continue;
    }
    in_word = true;
    if (c == '"') q = Quote::Weak;
    else if (c == '\'') q = Quote::Strong;
    else cur.push_back(c);
    if (words.size() >= kMaxWords) return "too many words on one line";
  }
  if (q != Quote::None) return q == Quote::Weak ? "unterminated \"...\"" : "unterminated '...'";
  end_word();
  return "";
}

// Does the physical line end with a `\` that escapes the newline (an odd count of trailing
// backslashes, outside a strong quote)? Comments are not looked into: a `#` ends the line.
bool continues(std::string_view line) {
  size_t n = 0;
  while (n < line.size() && line[line.size() - 1 - n] == '\\') ++n;
  if (n % 2 == 0) return false;
  // Not inside '...' or after a comment: scan the line once.
  bool strong = false, weak = false;
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    char c = line[i];
    if (strong) {
      if (c == '\'') strong = false;
      continue;
    }
    if (c == '\\') {
      ++i;
      continue;
    }
    if (weak) {
      if (c == '"') weak = false;
      continue;
    }
    if (c == '#') return false;
    if (c == '\'') strong = true;
    else if (c == '"') weak = true;
  }
  return !strong;
}

}  // namespace

ParseResult parse_haproxy(std::string_view text, const EnvFn& env) {
  ParseResult out;
  int number = 0;
  size_t pos = 0;
  std::vector<std::string> words;
  auto fail = [&](int line, std::string why) {
    out.error_line = line;
    out.error = std::move(why);
    out.sections.clear();
    return out;
  };
  while (pos < text.size()) {
    // One logical line: physical lines joined by continuations.
    std::string logical;
    int first = number + 1;
    for (;;) {
      size_t nl = text.find('\n', pos);
      std::string_view phys = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
      pos = nl == std::string_view::npos ? text.size() : nl + 1;
      ++number;
      if (phys.find('\0') != std::string_view::npos) return fail(number, "NUL byte in the line");
      if (continues(phys) && pos < text.size()) {
        logical.append(phys.substr(0, phys.size() - 1));
        logical.push_back(' ');
        if (logical.size() > kMaxLine) return fail(first, "line too long");
        continue;
      }
      logical.append(phys);
      break;
    }
    if (logical.size() > kMaxLine) return fail(first, "line too long");
    size_t notes_before = out.notes.size();
    std::string err = split_words(logical, env, words, out.notes);
    if (!err.empty()) return fail(first, err);
    for (size_t k = notes_before; k < out.notes.size(); ++k)
      out.notes[k] = "line " + std::to_string(first) + ": " + out.notes[k];
    if (words.empty()) continue;
    std::string kw = lower(words[0]);
    if (is_section(kw)) {
      Section s;
      s.kind = kw;
      s.line = first;
      size_t i = 1;
      if (kw != "global" && i < words.size() && words[i] != "from") s.name = words[i++];
      for (; i < words.size(); ++i) {
        if (words[i] == "from") {
          if (i + 1 >= words.size()) return fail(first, "'from' needs the name of a defaults section");
          s.from = words[++i];
        } else {
          s.args.push_back(words[i]);
        }
      }
      if ((kw == "frontend" || kw == "backend" || kw == "listen" || kw == "resolvers") && s.name.empty())
        return fail(first, "'" + kw + "' needs a name");
      out.sections.push_back(std::move(s));
      continue;
    }
    if (out.sections.empty())
      return fail(first, "'" + words[0] + "' outside of any section (global, defaults, frontend, backend, listen, ...)");
    Line l;
    l.number = first;
    l.words = std::move(words);
    words = {};
    l.text = logical;
    // Drop a trailing comment and surrounding blanks from the text kept for comments.
    while (!l.text.empty() && is_blank(l.text.back())) l.text.pop_back();
    size_t lead = 0;
    while (lead < l.text.size() && is_blank(l.text[lead])) ++lead;
    l.text.erase(0, lead);
    out.sections.back().lines.push_back(std::move(l));
  }
  return out;
}

std::optional<long long> haproxy_time_ms(std::string_view t) {
  size_t i = 0;
  long long v = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
    if (v > 1000000000000LL) return std::nullopt;
    v = v * 10 + (t[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string_view unit = t.substr(i);
  if (unit.empty() || unit == "ms") return v;
  if (unit == "us") return v / 1000;
  if (unit == "s") return v * 1000;
  if (unit == "m") return v * 60000;
  if (unit == "h") return v * 3600000;
  if (unit == "d") return v * 86400000;
  return std::nullopt;
}

}  // namespace stickyd::haproxy
