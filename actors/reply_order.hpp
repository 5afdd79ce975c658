// A session's replies in the order of the commands they answer. Most
// replies are ready at once and go straight to the connection; a reply
// whose answer comes later (a `sub` until the broker reports it live, a
// history channel's sub/pub/history until its shard answers) holds a slot,
// and every reply after it waits behind it. Plain logic: the session
// actor owns one, unit tests drive it with a recording sink.
#pragma once

#include "core/ports.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::actors {

class reply_order {
public:
  /// A reply in its place: ready once its answer is known. History answers
  /// carry the command's id and channel, and a sub's replayed messages.
  struct held_reply {
    frame_ptr frame;
    std::vector<frame_ptr> more; ///< sent after `frame` (a recovery's replay)
    std::string id;
    std::string ch;
    bool release = false; ///< a history sub: its channel is reported once sent
    bool server = false;  ///< a server-side sub: answered `subscribed`, not `ack`
    bool ready = false;
  };

  /// True when no reply waits (the next one goes out at once).
  bool empty() const noexcept { return !held_; }
  /// Holds a place for a reply that comes later; returns its slot number.
  std::uint64_t hold(std::string_view id, std::string_view ch);
  /// The reply in slot `n`, or null when it was sent (or never held).
  held_reply* slot(std::uint64_t n) noexcept;
  /// A reply that is ready now: sent at once when nothing waits, else
  /// queued behind what waits.
  void reply(frame_sink& sink, frame_ptr frame);
  /// Sends the ready replies at the front, in order, stopping at the first
  /// that is not ready. The channels of sent replies marked `release` are
  /// appended to `released`.
  void flush(frame_sink& sink, std::vector<std::string>& released);

private:
  // Kept behind a pointer: most sessions hold nothing, and an idle node
  // holds one reply_order per connection.
  struct held_replies {
    std::vector<held_reply> replies;
    std::uint64_t base = 0; ///< the slot number of replies.front()
  };
  std::unique_ptr<held_replies> held_;
};

} // namespace wsnode::actors
