// Protocol adapters: the same scenarios against wsnode (protocol v1),
// Socket.IO v4 (engine.io 4 over a raw WebSocket) and nginx's Nchan.
// Pure framing code: no sockets (unit-tested on its own).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::bench {

enum class protocol { wsnode, socketio, nchan };

/// "wsnode", "socketio" or "nchan".
std::optional<protocol> protocol_from(std::string_view name);
std::string_view to_string(protocol p);

// ---------------------------------------------------------------- payloads

/// A benchmark payload: {"i":SEQ,"t":SENT_NS,"s":SENDER,"p":"xx.."} padded
/// with 'x' to `size` bytes (at least its fixed part).
std::string make_payload(std::uint64_t seq, std::uint64_t sent_ns, std::uint32_t sender,
                         std::size_t size);

/// What a received frame says about the message inside it.
struct stamp {
  std::uint64_t seq = 0;
  std::uint64_t sent_ns = 0;
  std::uint32_t sender = 0;
};

/// Finds the stamp of a payload inside any frame that carries it verbatim
/// (wsnode's `data`, Socket.IO's event argument, Nchan's body).
std::optional<stamp> read_stamp(std::string_view frame);

// ---------------------------------------------------------------- codecs

/// What one received frame was.
struct event {
  enum kind_t { none, ready, ack, message, error } kind = none;
  std::uint64_t id = 0;  ///< for ack/error
  std::string_view body; ///< for message: the frame
};

/// Protocol state of one connection.
class codec {
public:
  virtual ~codec() = default;
  /// Path and query of the WebSocket URL for `user`; Nchan subscribes by
  /// URL, so it needs `channel` here.
  virtual std::string path(const std::string& user, const std::string& channel) const = 0;
  /// True when the connection is usable as soon as the WebSocket is open.
  virtual bool ready_on_open() const = 0;
  /// Handles one received text frame; frames to send back go to `out`.
  virtual event on_frame(std::string_view frame, std::vector<std::string>& out) = 0;
  /// A subscribe command; empty when subscribing is part of the URL.
  virtual std::string subscribe(const std::string& ch, std::uint64_t id) const = 0;
  /// A publish over the WebSocket; empty when publishing is HTTP only.
  virtual std::string publish(const std::string& ch, const std::string& payload,
                              std::uint64_t id) const = 0;
  /// A direct message over the WebSocket; empty when HTTP only.
  virtual std::string direct(const std::string& user, const std::string& payload,
                             std::uint64_t id) const = 0;
  /// The channel that stands for user `u`'s direct messages (Nchan has
  /// no users: a channel per user).
  virtual std::string user_channel(const std::string& u) const { return "user." + u; }
};

std::unique_ptr<codec> make_codec(protocol p);

/// An HTTP publish: path and body (wsnode /api/publish, Nchan /pub/CH).
struct http_publish {
  std::string path;
  std::string body;
};
http_publish http_publish_for(protocol p, const std::string& ch, const std::string& payload);

} // namespace wsnode::bench
