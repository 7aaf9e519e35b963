// The session hand-over between two stickyd processes (SIGUSR2 upgrade).
//
// The old process sends the new one its affinity table (sid -> backend name, time left) so
// that sessions it learnt keep routing without sid tagging; afterwards both processes stream
// what they learn or forget to each other until the old one exits (while both serve, a
// client's next request may reach either). The format is text, one record per line, fields
// separated by one space, every field %-escaped (bytes outside '!'..'~' and '%' itself as %XX),
// so a sid or a backend name can hold any byte. It is versioned and bounded, and a decoder
// that meets anything else stops with an error: the new process then starts with an empty
// table rather than a wrong one.
//
//   old -> new   stickyd-affinity 1 <count>      header: version, entries that follow
//                e <sid> <backend> <ttl_ms>      x count
//                end
//                + <sid> <backend> <ttl_ms>      then learnt (or re-pointed) sessions
//                - <sid>                         and forgotten ones
//   new -> old   ready <pid>                     the new process serves: the old one drains
//                + ... / - ...                   then the same stream the other way
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace stickyd {

constexpr int kHandoverVersion = 1;
constexpr size_t kHandoverMaxLine = 1100;   // two 256-byte fields, escaped, and a number
constexpr size_t kHandoverMaxField = 256;   // decoded sid or backend name
constexpr uint64_t kHandoverMaxTtlMs = UINT32_MAX;

struct HandoverRecord {
  enum class Kind : uint8_t { Entry, SnapshotEnd, Learn, Forget, Ready };
  Kind kind = Kind::Entry;
  std::string sid;
  std::string backend;
  int64_t ttl_ms = 0;
  int64_t pid = 0;
};

// A field %-escaped as the format writes it, and back (false: not a valid field).
void append_escaped(std::string& out, std::string_view field);
bool unescape_field(std::string_view in, std::string& out);

// Encoders: each appends one line.
void append_handover_header(std::string& out, size_t count);
void append_handover_entry(std::string& out, char tag, std::string_view sid,
                           std::string_view backend, int64_t ttl_ms);  // tag 'e' or '+'
void append_handover_forget(std::string& out, std::string_view sid);
void append_handover_end(std::string& out);
void append_handover_ready(std::string& out, int64_t pid);

// Incremental decoder of one direction of the stream. Feed bytes as they come; each complete
// line gives at most one record. After an error it accepts nothing more.
class HandoverDecoder {
 public:
  enum class Side : uint8_t {
    New,  // reads what the old process sends: header, entries, end, then deltas
    Old,  // reads what the new process sends: ready, then deltas
  };
  enum class Status : uint8_t { NeedMore, Record, Error };

  // `max_entries`: the largest snapshot accepted (the new table's max_sessions).
  HandoverDecoder(Side side, size_t max_entries) : side_(side), max_entries_(max_entries) {}

  void feed(std::string_view bytes) {
    if (phase_ != Phase::Failed) buf_.append(bytes);
  }
  // The next record (Record), or NeedMore, or Error (see error()).
  Status next(HandoverRecord& out);
  const std::string& error() const { return error_; }
  size_t line() const { return line_; }
  bool snapshot_done() const { return phase_ == Phase::Deltas; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  enum class Phase : uint8_t { Header, Entries, Ready, Deltas, Failed };
  Status fail(std::string why);
  Status parse(std::string_view line, HandoverRecord& out);

  Side side_;
  size_t max_entries_;
  Phase phase_ = side_ == Side::New ? Phase::Header : Phase::Ready;
  std::string buf_;
  size_t pos_ = 0;  // start of the first unread line in buf_
  size_t line_ = 0;
  size_t expected_ = 0;  // entries announced by the header and not read yet
  std::string error_;
};

}  // namespace stickyd
