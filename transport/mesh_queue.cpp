#include "transport/mesh_queue.hpp"

#include <stdexcept>
#include <sys/eventfd.h>
#include <unistd.h>

namespace wsnode::transport::mesh {

void command_queue::open() {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0)
    throw std::runtime_error("mesh: eventfd failed");
}

void command_queue::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

bool command_queue::push(command c) {
  bool wake_it = false;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (c.op == command::pub && queue_.size() >= limit_)
      return false;
    wake_it = queue_.empty(); // a non-empty queue has woken the thread already
    queue_.push_back(std::move(c));
  }
  if (wake_it)
    wake();
  return true;
}

void command_queue::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

void command_queue::drain(std::vector<command>& out) {
  std::uint64_t n = 0;
  [[maybe_unused]] auto r = ::read(fd_, &n, sizeof n);
  std::lock_guard<std::mutex> g{mu_};
  out.swap(queue_);
}

} // namespace wsnode::transport::mesh
