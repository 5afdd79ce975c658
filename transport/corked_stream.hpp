// The next layer under Beast's WebSocket stream: reads go straight to the
// socket; writes (Beast's control frames: pong, ping, close, and compressed
// messages) are handed to the connection's frame_writer, which coalesces
// them with the data frames queued for the same connection and hands them
// all to the kernel in one write. Every byte a connection sends goes
// through its frame_writer, so nothing interleaves.
//
// Threading: the connection's io_context only (one thread per io_context).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

namespace wsnode::transport {

/// Where a connection's outgoing bytes go (implemented by ws_session).
class frame_writer {
public:
  virtual ~frame_writer() = default;
  /// Queues already framed bytes (from Beast) and schedules a flush.
  virtual void push_raw(std::string bytes) = 0;
  /// Runs `fn` once everything queued so far has been written (or failed).
  virtual void when_flushed(std::function<void()> fn) = 0;
};

class corked_stream {
public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  using next_layer_type = socket_type;

  explicit corked_stream(socket_type&& s) : socket_(std::move(s)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  socket_type& next_layer() noexcept { return socket_; }
  const socket_type& next_layer() const noexcept { return socket_; }

  /// Must be called before the first write.
  void attach(frame_writer* w) noexcept { writer_ = w; }
  frame_writer* writer() const noexcept { return writer_; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return socket_.async_read_some(buffers, std::forward<Token>(token));
  }

  /// Accepts all of `buffers` at once (copied into the writer's queue) and
  /// completes with their size; the real write happens at the next flush.
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::beast::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          std::string bytes;
          bytes.resize(boost::asio::buffer_size(b));
          boost::asio::buffer_copy(boost::asio::buffer(bytes), b);
          auto n = bytes.size();
          writer_->push_raw(std::move(bytes));
          auto ex = boost::asio::get_associated_executor(handler, socket_.get_executor());
          boost::asio::post(ex, boost::beast::bind_front_handler(std::move(handler),
                                                                 boost::beast::error_code{}, n));
        },
        token, buffers);
  }

private:
  socket_type socket_;
  frame_writer* writer_ = nullptr;
};

/// Beast's closing handshake ends with a teardown of the next layer: flush
/// what is queued (the close frame included), then tear the socket down.
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, corked_stream& s, TeardownHandler&& handler) {
  // std::function needs a copyable target; Beast's handler is move-only
  auto h = std::make_shared<std::decay_t<TeardownHandler>>(std::forward<TeardownHandler>(handler));
  s.writer()->when_flushed([role, &sock = s.next_layer(), h]() mutable {
    boost::beast::websocket::async_teardown(role, sock, std::move(*h));
  });
}

/// Synchronous teardown (not used by wsnode; required by Beast's interface).
inline void teardown(boost::beast::role_type role, corked_stream& s, boost::beast::error_code& ec) {
  boost::beast::websocket::teardown(role, s.next_layer(), ec);
}

} // namespace wsnode::transport
