// A token bucket: `rate` tokens per second refill a bucket of `burst`.
// Not thread-safe: owned by one session actor.
#pragma once

#include <algorithm>
#include <chrono>

namespace wsnode {

class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  /// No limit (take() always succeeds).
  token_bucket() noexcept : token_bucket(0, 1, clock::time_point{}) {}
  /// `rate` <= 0 disables the limit (take() always succeeds).
  token_bucket(double rate, double burst, clock::time_point now = clock::now()) noexcept
    : rate_(rate), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}

  /// Takes one token; returns false when the bucket is empty.
  bool take(clock::time_point now = clock::now()) noexcept {
    if (rate_ <= 0)
      return true;
    refill(now);
    if (tokens_ < 1.0)
      return false;
    tokens_ -= 1.0;
    return true;
  }

  /// Tokens available now (for tests and diagnostics).
  double available(clock::time_point now = clock::now()) noexcept {
    refill(now);
    return tokens_;
  }

private:
  void refill(clock::time_point now) noexcept {
    if (now <= last_)
      return;
    std::chrono::duration<double> dt = now - last_;
    tokens_ = std::min(burst_, tokens_ + dt.count() * rate_);
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  clock::time_point last_;
};

} // namespace wsnode
