// The history of one channel: a ring of its newest messages within one
// epoch, and the idempotency keys of recent publishes. Plain data, owned by
// one broker shard; no locking.
//
// Offsets count 1, 2, 3, ... per channel within an epoch; `top` is the
// offset of the newest message ever appended (0: none yet). The ring keeps
// at most `size` messages and none older than `ttl`; keys are kept for the
// idempotency window, independent of the ring.
#pragma once

#include "core/ports.hpp"

#include "protocol/names.hpp"
#include <chrono>
#include <cstdint>

#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsnode::actors {

using protocol::make_epoch;

class history_log {
public:
  using clock = std::chrono::steady_clock;

  struct entry {
    std::uint64_t off = 0;
    frame_ptr frame; ///< the encoded msg frame (it carries `off`)
    clock::time_point at;
  };
  struct limits {
    std::size_t size = 100;
    std::chrono::milliseconds ttl{300000};
    std::chrono::milliseconds key_window{300000};
    std::size_t max_keys = 65536; ///< keys kept per channel at most
  };

  history_log(std::string epoch, limits l) : epoch_(std::move(epoch)), limits_(l) {}

  const std::string& epoch() const noexcept { return epoch_; }
  std::uint64_t top() const noexcept { return top_; }
  /// Offset of the oldest message held (top + 1 when none is held).
  std::uint64_t first() const noexcept { return ring_.empty() ? top_ + 1 : ring_.front().off; }
  std::size_t size() const noexcept { return ring_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  std::size_t key_count() const noexcept { return keys_.size(); }
  const std::deque<entry>& entries() const noexcept { return ring_; }

  /// Appends the message with offset top() + 1; `key` may be empty.
  void append(frame_ptr frame, std::string_view key, clock::time_point now);
  /// Replaces the state (a copy received from another node): `top` is the
  /// newest offset, `entries` the ones held (ascending, ending at `top`).
  void reset(std::string epoch, std::uint64_t top, std::deque<entry> entries);
  /// Records a key for offset `off` (keys that travel with a copy).
  void remember_key(std::string key, std::uint64_t off, clock::time_point at);
  /// Drops messages older than the ttl and keys older than the window.
  void expire(clock::time_point now);

  /// The offset first published with `key`, when it is still remembered.
  std::optional<std::uint64_t> find_key(std::string_view key) const;
  /// Calls f(key, off, at) for every remembered key, oldest first.
  template <class F>
  void for_each_key(F&& f) const {
    for (const auto& k : key_order_) {
      auto it = keys_.find(k.key);
      if (it != keys_.end() && it->second.at == k.at)
        f(std::string_view{k.key}, it->second.off, k.at);
    }
  }

  /// The messages after `since` up to `upto` (at most `max`), oldest
  /// first, into `out`. False (and nothing added) when they are not all
  /// held any more, when there are more than `max`, or when `since` is
  /// ahead of `upto`.
  bool read_since(std::uint64_t since, std::size_t max, std::uint64_t upto,
                  std::vector<frame_ptr>& out) const;
  /// The newest `limit` messages up to `upto`, oldest first; with `after`,
  /// only those with a larger offset (the oldest `limit` of them).
  void newest(std::size_t limit, std::uint64_t upto, std::vector<frame_ptr>& out,
              std::optional<std::uint64_t> after = std::nullopt) const;

private:
  void trim_to_size();
  struct key_rec {
    std::uint64_t off;
    clock::time_point at;
  };
  struct key_age {
    std::string key;
    clock::time_point at;
  };

  std::string epoch_;
  limits limits_;
  std::uint64_t top_ = 0;
  std::deque<entry> ring_;
  std::size_t bytes_ = 0;
  std::unordered_map<std::string, key_rec> keys_;
  std::deque<key_age> key_order_; // oldest first; stale rows are skipped
};

} // namespace wsnode::actors
