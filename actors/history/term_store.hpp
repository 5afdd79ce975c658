// The terms this node may have promised, kept across restarts.
//
// A promise (history/service.hpp) says "I reject older terms from now on";
// a node that forgot its promises in a restart could promise an older term
// again and let two owners each count it towards their majority. So every
// term a node promises or takes is first covered by a ceiling written to a
// small file with fsync, and after a restart every channel starts promised
// up to that ceiling. The ceiling moves in blocks (a write per 1024 terms,
// not per promise); terms only need to grow, not to be dense.
#pragma once

#include <cstdint>
#include <string>

namespace wsnode::actors {

class term_store {
public:
  /// `path` empty: promises live in memory only (a single node, or no
  /// `[history] state_dir`). Throws std::runtime_error when the file
  /// exists but cannot be read or does not hold a term.
  /// `at_least`: a floor known from elsewhere (the files of other broker
  /// shards: a channel may have moved between shards since).
  explicit term_store(std::string path, std::uint64_t at_least = 0);

  /// Terms at or below this may have been promised before this process.
  std::uint64_t floor() const noexcept { return floor_; }
  /// Makes `term` durable before it is promised or used; false when the
  /// file cannot be written (then the promise must not be made).
  bool reserve(std::uint64_t term);

  static constexpr std::uint64_t block = 1024;

  /// Creates `dir` when missing and returns the highest term its files
  /// ("history-terms-N", one per broker shard) cover. Throws
  /// std::runtime_error when `dir` cannot be made or written, or a file
  /// is unreadable: a node must not start without its promises.
  static std::uint64_t floor_of_dir(const std::string& dir);

private:
  std::string path_;
  std::uint64_t floor_ = 0;
  std::uint64_t ceiling_ = 0;
};

} // namespace wsnode::actors
