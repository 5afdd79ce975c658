// The inside of ws_session, the one class behind start_ws_session (see
// ws_session.hpp). Its methods live in three files, one part of a
// connection's life each: ws_session.cpp (the start, what the session is
// sent, the write queue's writes), ws_session_input.cpp (reads, frames,
// messages) and ws_session_close.cpp (the close handshake's steps, the end
// of the connection). Private to those files.
//
// There is no LTO: a call from one file to another is never inlined. So the
// methods on the per-frame path live in the file of their callers, and those
// called only there are declared `inline` (as when the class was one file)
// and defined in that file alone. What crosses files is rare: the first
// read and a resumed one, control frames, the connection's end.
#pragma once

#include "transport/ws_session.hpp"

#include "protocol/websocket.hpp"
#include "protocol/ws_deflate.hpp"
#include "transport/close_handshake.hpp"
#include "transport/delivery_lane.hpp"
#include "transport/write_queue.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsnode::transport {

/// Threading: everything runs on the connection's io_context (one thread),
/// except send/close/input_done, which may be called from any thread.
class ws_session final : public frame_sink,
                         public lane_session,
                         public std::enable_shared_from_this<ws_session> {
public:
  ws_session(std::shared_ptr<server_context> ctx, stream_socket&& s, delivery_lane& lane,
             bool batch);
  ~ws_session() override;

  /// Answers the upgrade and starts the session.
  void run(const ws_handshake& hs, const session_identity& who);

  // ------------------------------------------------------------ frame_sink (any thread)
  // ws_session.cpp

  send_result send(frame_ptr f) override;
  send_result send_lossy(frame_ptr f) override;
  send_result send_replay(frame_ptr f) override;
  void close(std::uint16_t code, std::string reason) override;
  bool batched() const noexcept override { return batch_; }
  void input_done() override;

  // ------------------------------------------------------------ io thread: output
  // ws_session.cpp

  /// One frame from the lane.
  void deliver(frame_ptr f, bool lossy) override;

  /// Writes what is queued (see write_queue); only when the kernel's buffer
  /// is full does the session wait for the socket to become writable.
  void flush() override;

  /// flush()'s write alone, on the lane's helper thread (the lane thread
  /// waits): a drained queue is done; all else goes back to flush() on the
  /// io thread, which finds what is left still queued.
  bool write_only(std::vector<boost::asio::const_buffer>& iov) override;

  // A write waits for the socket, one failed, or nothing is queued.
  bool nothing_to_write() const noexcept { return writing_ || write_failed_ || out_.empty(); }

  /// Once per lane tick: frees an empty queue's memory; keep-alive: a ping
  /// after ping_interval of silence, the connection dropped after twice that.
  void check_alive(std::uint32_t tick) override;

private:
  // ------------------------------------------------------------ reading
  // ws_session_input.cpp

  void do_read();
  inline void on_readable(boost::system::error_code ec);
  inline bool consume(const char* p, std::size_t n);
  inline void on_message();
  void on_close_frame();
  void on_violation(std::uint16_t code);

  // ------------------------------------------------------------ writing
  // ws_session.cpp

  void push_raw(std::string bytes);
  inline void push_entry(out_entry&& e);
  void wait_writable();
  void fail_write(boost::system::error_code ec);
  void discard_unsent(drop_reason why);

  // ------------------------------------------------------------ closing
  // ws_session_close.cpp

  void perform(const close_handshake::steps& steps);
  void on_slow();
  void start_close(std::uint16_t code, std::string reason);

  // Everything queued has reached the kernel.
  bool drained() const noexcept { return !writing_ && out_.empty(); }

  // What a close waits for once everything queued reached the kernel.
  void after_flush() {
    if (drained())
      perform(hs_.on_drained());
  }

  void wait_close_timer();
  void teardown();
  void lost(boost::system::error_code ec);
  void finish();

  std::shared_ptr<server_context> ctx_; // alive as long as this session
  delivery_lane& lane_;
  stream_socket socket_;
  std::uint64_t sid_ = 0;
  std::unique_ptr<session_handler> handler_;
  protocol::ws::frame_reader reader_;
  // permessage-deflate, when negotiated (most connections: not)
  struct compression {
    protocol::ws::deflate_params params;
    std::unique_ptr<protocol::ws::inflater> inflater; // kept between messages unless no_context
  };
  std::unique_ptr<compression> deflate_;
  write_queue out_;
  // What only an ending connection needs, kept out of every open one.
  struct closing_state {
    explicit closing_state(boost::asio::io_context& ioc) : timer(ioc) {}
    boost::asio::steady_timer timer; // bounds the close (close_handshake::on_timer)
    std::string reason;              // of our close frame
    std::string peer_reason;         // of the client's
  };
  closing_state& closing() {
    if (!closing_)
      closing_ = std::make_unique<closing_state>(lane_.context());
    return *closing_;
  }
  std::unique_ptr<closing_state> closing_; // made when the connection starts to end
  close_handshake hs_;
  std::uint32_t last_rx_tick_ = 0;
  bool pinged_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  const bool batch_; // the client asked for merged frames (batch=1)
  std::atomic<bool> read_paused_{false};
  std::atomic<std::size_t> pending_input_{0};
  std::atomic<std::size_t> replay_allowance_{0}; // see send_replay
};

} // namespace wsnode::transport
