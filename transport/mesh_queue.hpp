// What other threads ask of the mesh thread (subscribe, unsubscribe,
// publish), through a bounded queue and an eventfd that wakes its poll.
#pragma once

#include "core/ports.hpp"

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace wsnode::transport::mesh {

struct command {
  enum op_t : std::uint8_t { sub, unsub, pub } op;
  std::string topic;
  frame_ptr frame;
};

class command_queue {
public:
  /// Publishes beyond `pub_limit` waiting are refused (subscriptions never).
  explicit command_queue(std::size_t pub_limit) : limit_(pub_limit) {}
  ~command_queue() { close(); }
  command_queue(const command_queue&) = delete;
  command_queue& operator=(const command_queue&) = delete;

  /// Makes the eventfd. Throws std::runtime_error when it cannot.
  void open();
  void close();
  /// The eventfd the mesh thread polls.
  int fd() const noexcept { return fd_; }

  /// Any thread. False when a publish found the queue full (dropped).
  bool push(command c);
  /// Wakes the mesh thread (to stop it).
  void wake();
  /// The mesh thread, when fd() is readable: takes what waits.
  void drain(std::vector<command>& out);

private:
  std::size_t limit_;
  int fd_ = -1;
  std::mutex mu_;
  std::vector<command> queue_;
};

} // namespace wsnode::transport::mesh
