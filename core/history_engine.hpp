// Channel history held by an engine outside wsnode (JetStream on NATS:
// transport/js_history.hpp) instead of the mesh's own replication. The
// engine gives each channel its epoch and contiguous offsets and keeps the
// newest messages; actors/history/engine_store.hpp turns it into the
// broker's history_store (frames, recovery rules, ttl, the broker's thread).
//
// Rules of use: every call returns at once; each `done` is called exactly
// once, on one of the engine's threads, within the engine's timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wsnode {

/// Now, in Unix ms: the clock of engine_message::time_ms.
inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// One message as the engine holds it.
struct engine_message {
  std::uint64_t off = 0;
  std::string from;         ///< "" for the HTTP API
  std::string data;         ///< the client's raw JSON
  std::int64_t time_ms = 0; ///< when it was published (Unix ms, publisher's clock)
};

struct engine_append_result {
  bool ok = false;
  std::string error; ///< why, when !ok
  std::string ep;
  std::uint64_t off = 0;
  bool repeat = false; ///< a repeat of a key: `off` is the first publish's
};

struct engine_read_result {
  bool ok = false;
  std::string error;
  std::string ep;        ///< the channel's epoch (made when it had none)
  std::uint64_t top = 0; ///< its newest offset (0: no message yet)
  /// Oldest first: the newest messages with an offset above `after`, at most
  /// `max_count`; fewer than top - after when older ones are gone.
  std::vector<engine_message> messages;
};

class history_engine {
public:
  using append_done = std::function<void(engine_append_result)>;
  using read_done = std::function<void(engine_read_result)>;

  virtual ~history_engine() = default;
  /// Appends `data` to channel `ch` at its next offset; with a `key`, a
  /// repeat of (ch, key) within the idempotency window gets the first
  /// append's offset instead.
  virtual void append(const std::string& ch, std::string from, std::string data, std::string key,
                      append_done done) = 0;
  /// The position of `ch` and its messages after `after` (at most
  /// `max_count`, the newest; 0: the position alone).
  virtual void read(const std::string& ch, std::uint64_t after, std::size_t max_count,
                    read_done done) = 0;
  /// `f` is called (on an engine thread) when messages of any channel may
  /// have missed the live feed (a stream changed leader, the connection was
  /// made again): the history of channels with subscribers should check
  /// their newest offset.
  virtual void on_suspect(std::function<void()> f) = 0;
};

} // namespace wsnode
