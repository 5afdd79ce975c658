// ws_session (ws_session_impl.hpp), its input: waiting for the socket,
// draining it into the io thread's shared read buffer, parsing frames and
// handing each message to the session handler, with input flow control.
// A close frame or a protocol violation goes to the close handshake
// (ws_session_close.cpp). The per-read path (on_readable, consume,
// on_message) is all here, so its calls stay within one file and inline.
#include "transport/ws_session_impl.hpp"

#include <spdlog/spdlog.h>

namespace wsnode::transport {

namespace {

namespace net = boost::asio;
namespace ws = protocol::ws;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

using phase = close_handshake::phase;

/// Full buffers read from one socket before others get their turn.
constexpr int max_reads_per_wakeup = 4;

} // namespace

// Waits for the socket to become readable: no buffer is held meanwhile.
void ws_session::do_read() {
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
}

inline void ws_session::on_readable(error_code ec) {
  if (hs_.current() == phase::closed)
    return;
  if (ec)
    return lost(ec);
  for (int i = 0; i < max_reads_per_wakeup; ++i) {
    error_code rec;
    auto* buf = lane_.rx_buffer();
    auto n = socket_.read_some(net::buffer(buf, rx_buffer_bytes), rec);
    if (rec == net::error::would_block || rec == net::error::try_again)
      break;
    if (rec)
      return lost(rec);
    last_rx_tick_ = lane_.tick();
    pinged_ = false;
    bool more = consume(buf, n);
    if (handler_)
      handler_->on_read_end(); // the read's messages go to the actor together
    if (!more)
      return; // the connection is ending: read no more
    if (n < rx_buffer_bytes)
      break;
  }
  auto max = ctx_->opts.max_pending_input;
  if (pending_input_.load() >= max) {
    // Too many messages not yet handled: stop reading (TCP pushes back on
    // the client) until input_done() catches up.
    read_paused_ = true;
    if (pending_input_.load() < max && read_paused_.exchange(false))
      do_read();
    return;
  }
  do_read();
}

// Parses `n` bytes; returns false when nothing more should be read.
inline bool ws_session::consume(const char* p, std::size_t n) {
  if (hs_.discarding_input())
    return true; // lingering after a protocol error: read and drop until EOF
  const char* end = p + n;
  while (true) {
    switch (reader_.next(p, end)) {
    case ws::frame_reader::event::need_more:
      return true;
    case ws::frame_reader::event::message:
      on_message();
      break;
    case ws::frame_reader::event::ping:
      if (hs_.current() == phase::open)
        push_raw(ws::make_frame(ws::opcode::pong, reader_.control_payload()));
      break;
    case ws::frame_reader::event::pong:
      break;
    case ws::frame_reader::event::close:
      on_close_frame();
      return hs_.current() != phase::closed;
    case ws::frame_reader::event::error:
      on_violation(reader_.error_code());
      return hs_.current() != phase::closed;
    }
    if (hs_.current() == phase::closed)
      return false;
    if (hs_.discarding_input())
      return true; // a violation inside a message (compressed data): read no further
  }
}

inline void ws_session::on_message() {
  auto text = reader_.take_message();
  bool binary = reader_.binary();
  if (reader_.compressed()) {
    auto& inflater = deflate_->inflater;
    if (!inflater)
      inflater = std::make_unique<ws::inflater>();
    std::string plain;
    auto r = inflater->decompress(text, plain, ctx_->opts.max_message_bytes);
    if (deflate_->params.client_no_context)
      inflater.reset(); // nothing to keep between messages
    // violations found after the frame layer: as any other (on_violation)
    if (r == ws::inflater::result::too_big)
      return on_violation(close_code::too_big);
    if (r == ws::inflater::result::bad_data)
      return on_violation(1002);
    if (!binary && !ws::valid_utf8(plain))
      return on_violation(1007);
    text = std::move(plain);
  }
  if (hs_.current() != phase::open || !handler_)
    return;
  pending_input_.fetch_add(1);
  handler_->on_message(std::move(text), binary);
}

// The client's close frame: the answer to ours, or its own close. Its own
// is echoed once the session has answered the messages before it.
void ws_session::on_close_frame() {
  if (hs_.peer_code() == 0) // the first one's reason is the one logged
    closing().peer_reason = std::string{reader_.close_reason()};
  perform(hs_.on_peer_close(reader_.close_code()));
}

// A protocol violation (1002 framing, 1007 UTF-8, 1009 size): every
// complete message before it is handled and answered, then the
// connection fails with `code`. Nothing after it is read.
void ws_session::on_violation(std::uint16_t code) {
  spdlog::debug("protocol error sid={}-{}: {}", ctx_->opts.node_id, sid_, code);
  perform(hs_.on_violation(code));
}

} // namespace wsnode::transport
