#include "stickyd/handover.hpp"

#include <charconv>
#include <vector>

namespace stickyd {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // the encoder writes upper case only: anything else is not ours
}

}  // namespace

void append_escaped(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    if (c > ' ' && c <= '~' && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

// A field as append_escaped wrote it: non-empty, decoded length at most kHandoverMaxField.
bool unescape_field(std::string_view in, std::string& out) {
  out.clear();
  if (in.empty()) return false;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (static_cast<unsigned char>(c) > ' ' && static_cast<unsigned char>(c) <= '~') {
      out.push_back(c);
    } else {
      return false;
    }
    if (out.size() > kHandoverMaxField) return false;
  }
  return true;
}

namespace {

// A decimal number without sign or leading zeros (0 itself allowed), at most `max`.
bool number(std::string_view s, uint64_t max, uint64_t& v) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && v <= max;
}

// Fields separated by exactly one space; no empty field.
bool split(std::string_view line, std::vector<std::string_view>& fields, size_t max_fields) {
  fields.clear();
  size_t start = 0;
  for (;;) {
    size_t sp = line.find(' ', start);
    std::string_view f = line.substr(start, sp == std::string_view::npos ? sp : sp - start);
    if (f.empty() || fields.size() == max_fields) return false;
    fields.push_back(f);
    if (sp == std::string_view::npos) return true;
    start = sp + 1;
  }
}

}  // namespace

void append_handover_header(std::string& out, size_t count) {
  out += "stickyd-affinity ";
  out += std::to_string(kHandoverVersion);
  out += ' ';
  out += std::to_string(count);
  out += '\n';
}

void append_handover_entry(std::string& out, char tag, std::string_view sid,
                           std::string_view backend, int64_t ttl_ms) {
  out.push_back(tag);
  out.push_back(' ');
  append_escaped(out, sid);
  out.push_back(' ');
  append_escaped(out, backend);
  out.push_back(' ');
  if (ttl_ms < 0) ttl_ms = 0;
  if (static_cast<uint64_t>(ttl_ms) > kHandoverMaxTtlMs) ttl_ms = static_cast<int64_t>(kHandoverMaxTtlMs);
  out += std::to_string(ttl_ms);
  out.push_back('\n');
}

void append_handover_forget(std::string& out, std::string_view sid) {
  out += "- ";
  append_escaped(out, sid);
  out.push_back('\n');
}

void append_handover_end(std::string& out) { out += "end\n"; }

void append_handover_ready(std::string& out, int64_t pid) {
  out += "ready ";
  out += std::to_string(pid);
  out.push_back('\n');
}

HandoverDecoder::Status HandoverDecoder::fail(std::string why) {
  phase_ = Phase::Failed;
  error_ = "line " + std::to_string(line_) + ": " + why;
  buf_.clear();
  pos_ = 0;
  return Status::Error;
}

HandoverDecoder::Status HandoverDecoder::next(HandoverRecord& out) {
  if (phase_ == Phase::Failed) return Status::Error;
  size_t nl = buf_.find('\n', pos_);
  if (nl == std::string::npos) {
    if (buf_.size() - pos_ > kHandoverMaxLine) {
      ++line_;
      return fail("line too long");
    }
    // Keep the buffer small: drop what has been read.
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return Status::NeedMore;
  }
  ++line_;
  std::string_view line(buf_.data() + pos_, nl - pos_);
  pos_ = nl + 1;
  if (line.size() > kHandoverMaxLine) return fail("line too long");
  return parse(line, out);
}

HandoverDecoder::Status HandoverDecoder::parse(std::string_view line, HandoverRecord& out) {
  // A reused record keeps only its buffers: no field of the previous one may leak through.
  out.sid.clear();
  out.backend.clear();
  out.ttl_ms = 0;
  out.pid = 0;
  std::vector<std::string_view> f;
  if (!split(line, f, 4)) return fail("malformed record");
  uint64_t v = 0;
  switch (phase_) {
    case Phase::Header:
      if (f.size() != 3 || f[0] != "stickyd-affinity") return fail("not a stickyd affinity hand-over");
      if (!number(f[1], UINT32_MAX, v) || v != kHandoverVersion)
        return fail("unsupported version " + std::string(f[1]));
      if (!number(f[2], UINT64_MAX, v)) return fail("bad entry count");
      if (v > max_entries_)
        return fail(std::to_string(v) + " entries, more than max_sessions (" +
                    std::to_string(max_entries_) + ")");
      expected_ = static_cast<size_t>(v);
      phase_ = Phase::Entries;
      return next(out);  // the header itself is not a record
    case Phase::Entries:
      if (f.size() == 1 && f[0] == "end") {
        if (expected_ != 0) return fail(std::to_string(expected_) + " announced entries missing");
        phase_ = Phase::Deltas;
        out.kind = HandoverRecord::Kind::SnapshotEnd;
        return Status::Record;
      }
      if (f[0] != "e" || f.size() != 4) return fail("expected an entry");
      if (expected_ == 0) return fail("more entries than announced");
      --expected_;
      out.kind = HandoverRecord::Kind::Entry;
      break;
    case Phase::Ready:
      if (f.size() != 2 || f[0] != "ready" || !number(f[1], INT32_MAX, v) || v == 0)
        return fail("expected 'ready <pid>'");
      phase_ = Phase::Deltas;
      out.kind = HandoverRecord::Kind::Ready;
      out.pid = static_cast<int64_t>(v);
      return Status::Record;
    case Phase::Deltas:
      if (f[0] == "-" && f.size() == 2) {
        if (!unescape_field(f[1], out.sid)) return fail("bad sid");
        out.kind = HandoverRecord::Kind::Forget;
        return Status::Record;
      }
      if (f[0] != "+" || f.size() != 4) return fail("expected '+' or '-'");
      out.kind = HandoverRecord::Kind::Learn;
      break;
    case Phase::Failed:
      return Status::Error;
  }
  if (!unescape_field(f[1], out.sid)) return fail("bad sid");
  if (!unescape_field(f[2], out.backend)) return fail("bad backend name");
  if (!number(f[3], kHandoverMaxTtlMs, v)) return fail("bad ttl");
  out.ttl_ms = static_cast<int64_t>(v);
  return Status::Record;
}

}  // namespace stickyd
