#include "stickyd/pacing.hpp"

namespace stickyd {

PacedSchedule::PacedSchedule(int64_t start_ms, int64_t window_ms, size_t total)
    : start_ms_(start_ms), window_ms_(window_ms > 0 ? window_ms : 0), total_(total) {}

int64_t PacedSchedule::due_at(size_t i) const {
  if (total_ == 0 || window_ms_ == 0) return start_ms_;
  // 128-bit product: a window of days times millions of items must not overflow.
  unsigned __int128 num = static_cast<unsigned __int128>(window_ms_) * (i + 1);
  return start_ms_ + static_cast<int64_t>(num / total_);
}

size_t PacedSchedule::due_by(int64_t now_ms) const {
  if (total_ == 0) return 0;
  if (now_ms < start_ms_) return 0;
  if (window_ms_ == 0 || now_ms >= start_ms_ + window_ms_) return total_;
  // Largest n with due_at(n - 1) <= now: window * n / total <= elapsed  <=>
  // n <= (elapsed * total + total - 1) / window ... computed exactly, then checked.
  unsigned __int128 elapsed = static_cast<unsigned __int128>(now_ms - start_ms_);
  size_t n = static_cast<size_t>((elapsed * total_ + (total_ - 1)) / static_cast<unsigned __int128>(window_ms_));
  if (n > total_) n = total_;
  while (n > 0 && due_at(n - 1) > now_ms) --n;
  while (n < total_ && due_at(n) <= now_ms) ++n;
  return n;
}

int64_t PacedSchedule::next_due(int64_t now_ms) const {
  size_t n = due_by(now_ms);
  return n >= total_ ? -1 : due_at(n);
}

}  // namespace stickyd
