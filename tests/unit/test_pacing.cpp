#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>

#include "stickyd/pacing.hpp"

using stickyd::PacedSchedule;

TEST_CASE("pacing: items are due evenly, the last at the window's end") {
  PacedSchedule s(1000, 10000, 50);
  CHECK(s.due_by(999) == 0);
  CHECK(s.due_by(1000) == 0);
  CHECK(s.due_at(0) == 1200);
  CHECK(s.due_by(1199) == 0);
  CHECK(s.due_by(1200) == 1);
  CHECK(s.due_by(6000) == 25);
  CHECK(s.due_at(49) == 11000);
  CHECK(s.due_by(10999) == 49);
  CHECK(s.due_by(11000) == 50);
  CHECK(s.due_by(1000000) == 50);
  CHECK(s.next_due(1000) == 1200);
  CHECK(s.next_due(1200) == 1400);
  CHECK(s.next_due(11000) == -1);
}

TEST_CASE("pacing: due_by agrees with due_at everywhere, rate never above total/window") {
  for (size_t total : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{50}, size_t{999}, size_t{1000}, size_t{1001}, size_t{100000}}) {
    for (int64_t window : {int64_t{1}, int64_t{7}, int64_t{100}, int64_t{1000}, int64_t{30000}}) {
      PacedSchedule s(500, window, total);
      for (size_t i = 0; i < total && i < 3000; ++i) {
        int64_t t = s.due_at(i);
        CHECK(s.due_by(t) >= i + 1);
        if (t > 500) CHECK(s.due_by(t - 1) <= i);
        CHECK(t >= 500);
        CHECK(t <= 500 + window);
      }
      // In any span of `window / total` the pace lets at most one more go (plus rounding).
      int64_t step = window / static_cast<int64_t>(total) + 1;
      for (int64_t t = 500; t < 500 + window; t += step) {
        size_t a = s.due_by(t), b = s.due_by(t + step);
        CHECK(b - a <= static_cast<size_t>(static_cast<double>(step) * total / window) + 1);
      }
      CHECK(s.due_by(500 + window) == total);
    }
  }
}

TEST_CASE("pacing: items that left by themselves count as gone") {
  PacedSchedule s(0, 10000, 100);
  CHECK(s.to_close(5000, 0) == 50);
  CHECK(s.to_close(5000, 30) == 20);
  CHECK(s.to_close(5000, 60) == 0);  // more left on their own than due: close none
  CHECK(s.to_close(10000, 60) == 40);
}

TEST_CASE("pacing: an empty window or no item") {
  PacedSchedule now(100, 0, 5);
  CHECK(now.due_by(99) == 0);
  CHECK(now.due_by(100) == 5);
  CHECK(now.next_due(100) == -1);
  PacedSchedule none(100, 1000, 0);
  CHECK(none.due_by(5000) == 0);
  CHECK(none.next_due(100) == -1);
  PacedSchedule negative(100, -5, 3);
  CHECK(negative.due_by(100) == 3);
}

TEST_CASE("pacing: huge windows and counts do not overflow") {
  PacedSchedule s(0, int64_t{1} << 40, 10000000);
  CHECK(s.due_at(9999999) == int64_t{1} << 40);
  CHECK(s.due_by((int64_t{1} << 39)) == 5000000);
}
