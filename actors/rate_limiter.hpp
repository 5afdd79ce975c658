// A token bucket: `rate` tokens per second refill a bucket of `burst`.
// The limits are shared (one per node); each bucket keeps only its state,
// 16 bytes, since every connection holds two. Not thread-safe: owned by
// one session actor.
#pragma once

#include <algorithm>
#include <chrono>

namespace wsnode::actors {

/// `rate` <= 0 disables the limit (take() always succeeds).
struct bucket_limits {
  double rate = 0;
  double burst = 1;
};

class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  /// An empty bucket (for members set later).
  token_bucket() noexcept = default;
  /// A full bucket.
  explicit token_bucket(const bucket_limits& l, clock::time_point now = clock::now()) noexcept
    : tokens_(std::max(l.burst, 1.0)), last_(now) {}

  /// Takes one token; returns false when the bucket is empty.
  bool take(const bucket_limits& l, clock::time_point now = clock::now()) noexcept {
    if (l.rate <= 0)
      return true;
    refill(l, now);
    if (tokens_ < 1.0)
      return false;
    tokens_ -= 1.0;
    return true;
  }

  /// Tokens available now (for tests and diagnostics).
  double available(const bucket_limits& l, clock::time_point now = clock::now()) noexcept {
    refill(l, now);
    return tokens_;
  }

private:
  void refill(const bucket_limits& l, clock::time_point now) noexcept {
    if (now <= last_)
      return;
    std::chrono::duration<double> dt = now - last_;
    tokens_ = std::min(std::max(l.burst, 1.0), tokens_ + dt.count() * l.rate);
    last_ = now;
  }

  double tokens_ = 0;
  clock::time_point last_{};
};

} // namespace wsnode::actors
