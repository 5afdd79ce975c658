// One peer's link in the mesh: a SUB socket connected to that peer's XPUB
// address alone, and a monitor of it. A socket per peer, not one for all,
// so that the node knows which peer a connection event is about: when a
// peer's process dies its kernel resets the connection at once, and the
// mesh marks that peer dead without waiting for 3 silent heartbeats
// (heartbeats stay for silent failures: partitions, a stopped machine).
#pragma once

#include <zmq.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace wsnode::transport::mesh {

class link {
public:
  /// What the monitor reported, oldest first.
  enum class event : std::uint8_t { connected, disconnected };

  /// Opens the SUB socket and its monitor; `index` makes the monitor's
  /// inproc address unique within `ctx`.
  link(zmq::context_t& ctx, std::string endpoint, int hwm, std::size_t index);

  /// Connects to the peer (ZeroMQ reconnects by itself afterwards).
  void connect();
  void subscribe(std::string_view prefix);
  void unsubscribe(std::string_view prefix);

  zmq::socket_t& socket() noexcept { return sub_; }
  zmq::socket_t& monitor() noexcept { return mon_; }
  const std::string& endpoint() const noexcept { return endpoint_; }

  /// Reads the monitor's pending events; updates connected().
  std::vector<event> read_events();
  /// True between a connect and the next disconnect. Messages read while
  /// false were queued before the connection dropped: they are delivered,
  /// but they say nothing about whether the peer is alive now.
  bool connected() const noexcept { return connected_; }

  /// The node id heard on this link ("" until its first message).
  const std::string& node() const noexcept { return node_; }
  void set_node(std::string_view id) {
    if (node_ != id)
      node_ = std::string{id};
  }

  void close();

private:
  std::string endpoint_;
  zmq::socket_t sub_;
  zmq::socket_t mon_;
  std::string node_;
  bool connected_ = false;
};

} // namespace wsnode::transport::mesh
