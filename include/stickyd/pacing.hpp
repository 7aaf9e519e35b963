// PacedSchedule: spreads a known number of disconnections evenly over a time window.
//
// Closing every websocket of a node (or of a stopping proxy) at once makes every client
// reconnect in the same second: the reconnect storm Socket.IO operators fight. A schedule
// says how many of `total` items should be gone by a given time: item i (0-based) is due at
// start + window * (i + 1) / total, so the last one goes exactly at the window's end and the
// rate is total / window. Items that leave on their own (a client that disconnects) count as
// gone: the caller closes `due_by(now) - gone` more, never more than the pace allows, so the
// reconnect rate stays bounded by total / window whatever the clients do.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stickyd {

class PacedSchedule {
 public:
  PacedSchedule() = default;
  // `window_ms` <= 0: everything is due at `start_ms`.
  PacedSchedule(int64_t start_ms, int64_t window_ms, size_t total);

  size_t total() const { return total_; }
  int64_t start() const { return start_ms_; }
  int64_t end() const { return start_ms_ + window_ms_; }
  // When item i (0-based, < total) is due.
  int64_t due_at(size_t i) const;
  // How many items are due at `now_ms` (0..total).
  size_t due_by(int64_t now_ms) const;
  // The time the first item not yet due at `now_ms` becomes due; -1 when all are due.
  int64_t next_due(int64_t now_ms) const;
  // How many more to close now, given `gone` items already left (closed or on their own).
  size_t to_close(int64_t now_ms, size_t gone) const {
    size_t due = due_by(now_ms);
    return due > gone ? due - gone : 0;
  }

 private:
  int64_t start_ms_ = 0;
  int64_t window_ms_ = 0;
  size_t total_ = 0;
};

}  // namespace stickyd
