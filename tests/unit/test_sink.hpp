// A frame_sink that records what it is given (for broker and session tests).
#pragma once

#include "core/ports.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace wsnode::test {

class recording_sink final : public frame_sink {
public:
  send_result send(frame_ptr f) override {
    std::lock_guard<std::mutex> g{mu_};
    if (refuse_)
      return send_result::closed;
    ptrs_.push_back(f.get());
    frames_.push_back(*f);
    cv_.notify_all();
    return send_result::queued;
  }
  void close(std::uint16_t code, std::string reason) override {
    std::lock_guard<std::mutex> g{mu_};
    close_code_ = code;
    close_reason_ = std::move(reason);
    frames_at_close_ = frames_.size();
    cv_.notify_all();
  }
  void input_done() override { ++inputs_; }
  bool batched() const noexcept override { return batched_; }
  /// Makes it a session that asked for merged frames (batch=1).
  void set_batched(bool b) noexcept { batched_ = b; }
  /// The session handler that feed() and end_input() talk to (null: none).
  void attach(session_handler* h) {
    std::lock_guard<std::recursive_mutex> g{session_mu_};
    handler_ = h;
  }
  /// Hands a client message to the attached handler, as transport would.
  void feed(const std::string& text, bool binary = false) {
    std::lock_guard<std::recursive_mutex> g{session_mu_};
    if (handler_ != nullptr) {
      handler_->on_message(text, binary);
      handler_->on_read_end();
    }
  }
  /// Tells the attached handler the client's input ended (close frame or
  /// protocol violation), as transport would.
  void end_input(std::uint16_t code) {
    std::lock_guard<std::recursive_mutex> g{session_mu_};
    if (handler_ != nullptr)
      handler_->on_input_end(code);
  }
  /// Tells the attached handler the connection closed.
  void closed(std::uint16_t code = 1000) {
    std::lock_guard<std::recursive_mutex> g{session_mu_};
    if (handler_ != nullptr)
      handler_->on_closed(code, {});
  }

  /// Waits until at least `n` frames arrived (or 2 s); returns a copy.
  std::vector<std::string> wait_frames(std::size_t n) {
    std::unique_lock<std::mutex> g{mu_};
    cv_.wait_for(g, std::chrono::seconds(2), [&] { return frames_.size() >= n; });
    return frames_;
  }
  std::optional<std::uint16_t> wait_close() {
    std::unique_lock<std::mutex> g{mu_};
    cv_.wait_for(g, std::chrono::seconds(2), [&] { return close_code_.has_value(); });
    return close_code_;
  }
  std::vector<std::string> frames() {
    std::lock_guard<std::mutex> g{mu_};
    return frames_;
  }
  std::vector<const void*> pointers() {
    std::lock_guard<std::mutex> g{mu_};
    return ptrs_;
  }
  void refuse(bool r) {
    std::lock_guard<std::mutex> g{mu_};
    refuse_ = r;
  }
  int inputs() const { return inputs_.load(); }
  /// How many frames had been sent when close() was called.
  std::size_t frames_at_close() {
    std::lock_guard<std::mutex> g{mu_};
    return frames_at_close_;
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> frames_;
  std::vector<const void*> ptrs_;
  std::optional<std::uint16_t> close_code_;
  std::string close_reason_;
  std::size_t frames_at_close_ = 0;
  std::atomic<int> inputs_{0};
  std::recursive_mutex session_mu_;
  session_handler* handler_ = nullptr;
  bool refuse_ = false;
  bool batched_ = false;
};

} // namespace wsnode::test
