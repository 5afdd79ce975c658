// N io_contexts, each run by one thread. A connection lives on one of them
// for its whole life, so its state needs no strand or lock, and deliveries
// to the connections of one thread can be batched (see delivery_lane).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <thread>
#include <vector>

namespace wsnode::transport {

class io_pool {
public:
  explicit io_pool(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
      guards_.emplace_back(boost::asio::make_work_guard(*contexts_.back()));
    }
  }
  ~io_pool() {
    stop();
    join();
  }
  io_pool(const io_pool&) = delete;
  io_pool& operator=(const io_pool&) = delete;

  std::size_t size() const noexcept { return contexts_.size(); }
  boost::asio::io_context& context(std::size_t i) { return *contexts_.at(i); }

  /// Starts one thread per io_context.
  void run() {
    for (auto& c : contexts_)
      threads_.emplace_back([ctx = c.get()] { ctx->run(); });
  }
  /// Makes every run() return as soon as possible.
  void stop() {
    guards_.clear();
    for (auto& c : contexts_)
      c->stop();
  }
  void join() {
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
    threads_.clear();
  }

private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

} // namespace wsnode::transport
