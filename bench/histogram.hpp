// A latency histogram with bounded relative error (log-linear buckets, like
// HdrHistogram with 2 significant digits): fixed memory, O(1) record,
// mergeable across threads.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace wsnode::bench {

class histogram {
public:
  /// Records one value (microseconds). Values beyond 2^40 us are clamped.
  void record(std::uint64_t us) noexcept {
    ++counts_[index(us)];
    ++total_;
    max_ = std::max(max_, us);
    min_ = total_ == 1 ? us : std::min(min_, us);
    sum_ += static_cast<double>(us);
  }

  /// Adds every value of `o`.
  void merge(const histogram& o) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i)
      counts_[i] += o.counts_[i];
    if (o.total_ > 0) {
      min_ = total_ == 0 ? o.min_ : std::min(min_, o.min_);
      max_ = std::max(max_, o.max_);
    }
    total_ += o.total_;
    sum_ += o.sum_;
  }

  /// The value at quantile `q` (0..1): an upper bound of the bucket that
  /// holds it, never above the maximum recorded. 0 when empty.
  std::uint64_t quantile(double q) const noexcept {
    if (total_ == 0)
      return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank)
        return std::min(upper(i), max_);
    }
    return max_;
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  std::uint64_t min() const noexcept { return min_; }
  double mean() const noexcept { return total_ ? sum_ / static_cast<double>(total_) : 0; }

private:
  // Values < 128 have exact buckets; above, each power of two is split in
  // 64 sub-buckets: relative error below 1/64 (1.6%).
  static constexpr int sub_bits = 6;
  static constexpr std::uint64_t linear = 128;
  static constexpr int max_log = 40;

  static std::size_t index(std::uint64_t v) noexcept {
    if (v < linear)
      return static_cast<std::size_t>(v);
    v = std::min<std::uint64_t>(v, (std::uint64_t{1} << max_log) - 1);
    int log = 63 - __builtin_clzll(v); // >= 7
    auto sub = (v >> (log - sub_bits)) & ((1u << sub_bits) - 1);
    return linear + static_cast<std::size_t>(log - 7) * (1u << sub_bits) + sub;
  }

  static std::uint64_t upper(std::size_t i) noexcept {
    if (i < linear)
      return i;
    auto j = i - linear;
    int log = static_cast<int>(j >> sub_bits) + 7;
    auto sub = j & ((1u << sub_bits) - 1);
    auto base = std::uint64_t{1} << log;
    auto step = std::uint64_t{1} << (log - sub_bits);
    return base + (sub + 1) * step - 1;
  }

  std::array<std::uint64_t, linear + (max_log - 7 + 1) * (1u << sub_bits)> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = 0;
  double sum_ = 0;
};

/// Samples ranks 1..n with P(k) proportional to 1/k^s (Zipf), by inverse
/// transform over a precomputed CDF. Deterministic for a given generator.
class zipf {
public:
  zipf(std::size_t n, double s) : cdf_(n) {
    double sum = 0;
    for (std::size_t k = 0; k < n; ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), s);
      cdf_[k] = sum;
    }
    for (auto& c : cdf_)
      c /= sum;
  }

  /// A rank 0..n-1 (0 is the most popular) for `u` uniform in [0, 1).
  std::size_t sample(double u) const noexcept {
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    return it == cdf_.end() ? cdf_.size() - 1 : static_cast<std::size_t>(it - cdf_.begin());
  }

  /// The probability of rank `k`.
  double probability(std::size_t k) const noexcept {
    return k == 0 ? cdf_[0] : cdf_[k] - cdf_[k - 1];
  }

  std::size_t size() const noexcept { return cdf_.size(); }

private:
  std::vector<double> cdf_;
};

} // namespace wsnode::bench
