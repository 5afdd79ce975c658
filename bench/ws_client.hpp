// wsbench's WebSocket client: its own lean RFC 6455 client on a plain
// socket, so that what it measures of a server is the server: a readable
// socket is read until the kernel has nothing more, into the worker's
// shared buffer (every read and its bytes are counted: bytes per client
// read tell how the server cut its writes), frames are parsed in place,
// and what it sends is masked and written as one gather of everything
// queued. The protocol on top is a codec (bench/adapters.hpp).
#pragma once

#include "bench/engine_impl.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsnode::bench {

/// Which sequence numbers of one sender arrived: the highest and a window
/// of 1024 below it (messages may arrive out of order when publishes run
/// concurrently); anything older counts as a duplicate.
class seen_window {
public:
  bool first_time(std::uint64_t seq) {
    if (seq > top_) {
      auto shift = seq - top_;
      if (shift >= bits_.size())
        bits_.reset();
      else
        bits_ <<= shift;
      top_ = seq;
      bits_.set(0);
      return true;
    }
    auto back = top_ - seq;
    if (back >= bits_.size() || bits_.test(back))
      return false;
    bits_.set(back);
    return true;
  }

private:
  std::uint64_t top_ = 0;
  std::bitset<1024> bits_;
};

class ws_client : public std::enable_shared_from_this<ws_client> {
public:
  ws_client(engine::impl& e, worker& w, std::size_t index, client_spec spec);

  /// Connects, upgrades, subscribes (worker thread).
  void start(int attempt = 0);
  /// Sends one text frame; any thread.
  void send(std::string payload);
  /// Sends a close frame; any thread.
  void close();

  const std::string& node() const { return node_; }
  codec& proto() { return *codec_; }
  std::uint64_t next_id() { return ++next_id_; }

private:
  enum class state : std::uint8_t { connecting, upgrading, open, closed };

  void fail();
  void on_ready();
  void wait_readable();
  void on_readable();
  // Handles received bytes; false when the connection must end.
  bool take(std::string_view bytes);
  bool take_upgrade(std::string_view bytes);
  // Parses whole frames from the front of `in`; returns the bytes used,
  // or npos on a protocol error.
  std::size_t frames(std::string_view in);
  void on_message(std::string_view m);
  void queue(std::uint8_t opcode, std::string_view payload);
  void flush();
  void end();

  engine::impl& e_;
  worker& w_;
  std::size_t index_;
  client_spec spec_;
  std::unique_ptr<codec> codec_;
  boost::asio::ip::tcp::socket sock_;
  std::string rx_;       // bytes of a frame (or of the 101 response) not complete yet
  std::string fragments_; // a fragmented message so far
  std::string out_;      // frames waiting for the write under way
  std::string writing_;  // the write under way
  std::vector<std::string> replies_;
  std::vector<std::pair<std::uint32_t, seen_window>> seen_; // per sender
  std::string node_;
  std::uint32_t mask_seed_;
  std::size_t pending_subs_ = 0;
  std::atomic<std::uint64_t> next_id_{0};
  int attempt_ = 0;
  state state_ = state::connecting;
  bool ready_ = false;
  bool closing_ = false;
  bool in_write_ = false;
};

} // namespace wsnode::bench
