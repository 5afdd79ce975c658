#include "transport/ws_session.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>

namespace wsnode::transport {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

enum class phase : std::uint8_t { open, closing, closed };

/// Threading: every member not marked atomic is touched only on the
/// connection's strand; send/close/input_done may be called from any thread.
class ws_session final : public frame_sink, public std::enable_shared_from_this<ws_session> {
public:
  ws_session(std::shared_ptr<server_context> ctx, tcp::socket&& s, session_identity who)
    : ctx_ptr_(std::move(ctx)), ctx_(*ctx_ptr_), ws_(std::move(s)), who_(std::move(who)) {}

  ~ws_session() override {
    if (auto left = queued_bytes_.load())
      bump(ctx_.m.queued_bytes, -static_cast<std::int64_t>(left));
    bump(ctx_.m.connections, -1);
  }

  void run(http::request<http::string_body>&& req) {
    const auto& o = ctx_.opts;
    beast::get_lowest_layer(ws_).expires_never(); // the websocket timeouts rule from here
    websocket::stream_base::timeout t{};
    t.handshake_timeout = o.close_timeout;
    t.idle_timeout = 2 * o.ping_interval; // a ping after ping_interval of silence
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(o.max_message_bytes);
    ws_.auto_fragment(false);
    if (o.compression) {
      websocket::permessage_deflate pmd;
      pmd.server_enable = true;
      ws_.set_option(pmd);
    }
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "wsnode"); }));
    req_ = std::move(req);
    ws_.async_accept(req_,
                     [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  // ------------------------------------------------------------ frame_sink (any thread)

  send_result send(frame_ptr f) override {
    if (phase_.load(std::memory_order_acquire) != phase::open) {
      ctx_.m.drop(drop_reason::closed);
      return send_result::closed;
    }
    auto n = f->size();
    auto total = queued_bytes_.fetch_add(n) + n;
    if (total > ctx_.opts.max_queue_bytes && total != n) {
      queued_bytes_.fetch_sub(n);
      ctx_.m.drop(drop_reason::slow_consumer);
      if (!slow_.exchange(true))
        net::post(ws_.get_executor(), [self = shared_from_this()] { self->on_slow(); });
      return send_result::slow_consumer;
    }
    bump(ctx_.m.queued_bytes, static_cast<std::int64_t>(n));
    net::post(ws_.get_executor(), [self = shared_from_this(), f = std::move(f)]() mutable {
      self->enqueue(std::move(f));
    });
    return send_result::queued;
  }

  void close(std::uint16_t code, std::string reason) override {
    net::post(ws_.get_executor(),
              [self = shared_from_this(), code, r = std::move(reason)]() mutable {
                self->start_close(code, std::move(r), true);
              });
  }

  void input_done() override {
    auto left = pending_input_.fetch_sub(1) - 1;
    if (left < ctx_.opts.max_pending_input && read_paused_.load())
      net::post(ws_.get_executor(), [self = shared_from_this()] {
        if (self->phase_ != phase::closed && self->read_paused_.exchange(false))
          self->do_read();
      });
  }

private:
  // ------------------------------------------------------------ opening

  void on_accept(beast::error_code ec) {
    req_ = {};
    if (ec) {
      spdlog::debug("upgrade failed from {}: {}", who_.remote, ec.message());
      phase_ = phase::closed;
      return;
    }
    bump(ctx_.m.connections_total, 1);
    handler_ = ctx_.node.open_session(who_, shared_from_this(), sid_);
    spdlog::info("open sid={} user={} remote={}", sid_, who_.user, who_.remote);
    do_read();
  }

  // ------------------------------------------------------------ reading

  void do_read() {
    reading_ = true;
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec)
      return finish(ec);
    bool binary = !ws_.got_text();
    std::string text = beast::buffers_to_string(buf_.data());
    buf_.consume(buf_.size());
    if (buf_.capacity() > 16384)
      buf_.shrink_to_fit(); // do not keep a big message's buffer on an idle connection
    if (handler_)
      handler_->on_message(std::move(text), binary);
    auto max = ctx_.opts.max_pending_input;
    if (pending_input_.fetch_add(1) + 1 >= max) {
      // Too many messages not yet handled: stop reading (TCP pushes back on
      // the client) until input_done() catches up.
      read_paused_ = true;
      if (pending_input_.load() < max && read_paused_.exchange(false))
        do_read();
      return;
    }
    do_read();
  }

  // ------------------------------------------------------------ writing

  void enqueue(frame_ptr f) {
    if (phase_ != phase::open) {
      release(f->size());
      ctx_.m.drop(drop_reason::closed);
      return;
    }
    queue_.push_back(std::move(f));
    if (!writing_)
      do_write();
  }

  void do_write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(
        net::buffer(*queue_.front()),
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    release(queue_.front()->size());
    queue_.pop_front();
    if (ec) {
      discard_queue(drop_reason::closed);
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().close(ignored); // ends the read loop too
      return;
    }
    bump(ctx_.m.messages_out, 1);
    if (!queue_.empty())
      return do_write();
    if (close_after_flush_) {
      close_after_flush_ = false;
      do_close();
    }
  }

  void release(std::size_t n) {
    queued_bytes_.fetch_sub(n);
    bump(ctx_.m.queued_bytes, -static_cast<std::int64_t>(n));
  }

  // Drops every queued frame except the one being written (Beast still
  // reads its buffer).
  void discard_queue(drop_reason why) {
    std::size_t keep = writing_ ? 1 : 0;
    std::uint64_t dropped = 0;
    while (queue_.size() > keep) {
      release(queue_.back()->size());
      queue_.pop_back();
      ++dropped;
    }
    if (dropped > 0)
      ctx_.m.drop(why, dropped);
  }

  // ------------------------------------------------------------ closing

  void on_slow() {
    if (phase_ == phase::closed)
      return;
    spdlog::warn("slow consumer sid={} user={}: write queue over {} bytes, closing with 1013", sid_,
                 who_.user, ctx_.opts.max_queue_bytes);
    discard_queue(drop_reason::slow_consumer);
    if (phase_ == phase::open) {
      phase_ = phase::closing;
      close_code_ = close_code::try_later;
      close_reason_ = "slow consumer";
    }
    close_after_flush_ = false;
    do_close();
  }

  void start_close(std::uint16_t code, std::string reason, bool flush) {
    if (phase_ != phase::open)
      return;
    phase_ = phase::closing;
    close_code_ = code;
    close_reason_ = std::move(reason);
    if (flush && writing_) {
      close_after_flush_ = true;
      arm_kill_timer(); // a client that never reads must not hold the flush forever
      return;
    }
    do_close();
  }

  void do_close() {
    arm_kill_timer();
    if (close_started_ || !reading_alive())
      return;
    close_started_ = true;
    websocket::close_reason cr;
    cr.code = close_code_;
    cr.reason = close_reason_.substr(0, 120);
    ws_.async_close(cr, [self = shared_from_this()](beast::error_code) {
      // nop: the read loop ends with the closing handshake
    });
  }

  bool reading_alive() const { return !finished_ && ws_.is_open(); }

  void arm_kill_timer() {
    if (kill_timer_)
      return;
    kill_timer_ = std::make_unique<net::steady_timer>(ws_.get_executor());
    kill_timer_->expires_after(ctx_.opts.close_timeout);
    kill_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->finished_)
        return;
      spdlog::debug("close timeout sid={}: dropping the TCP connection", self->sid_);
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().close(ignored);
      if (!self->reading_)
        self->finish(net::error::timed_out);
    });
  }

  void finish(beast::error_code ec) {
    if (finished_)
      return;
    finished_ = true;
    phase_ = phase::closed;
    std::uint16_t code = close_code_;
    std::string why = close_reason_;
    if (code == 0) {
      if (ec == websocket::error::closed) {
        code = ws_.reason().code;
        why = std::string{ws_.reason().reason.data(), ws_.reason().reason.size()};
      } else if (ec == websocket::error::message_too_big) {
        code = close_code::too_big;
      } else if (ec == websocket::error::bad_frame_payload) {
        code = 1007;
      } else if (ec.category() == beast::error_code{websocket::error::closed}.category()) {
        code = 1002;
      } else {
        code = 1006;
      }
    }
    ctx_.m.close(code);
    spdlog::info("close sid={} user={} code={} reason=\"{}\" ({})", sid_, who_.user, code, why,
                 ec.message());
    if (handler_) {
      handler_->on_closed();
      handler_.reset();
    }
    if (kill_timer_)
      kill_timer_->cancel();
    discard_queue(drop_reason::closed);
  }

  std::shared_ptr<server_context> ctx_ptr_; // keeps ctx_ alive as long as this session
  server_context& ctx_;
  websocket::stream<beast::tcp_stream> ws_;
  session_identity who_;
  std::string sid_;
  http::request<http::string_body> req_;
  beast::flat_buffer buf_;
  std::unique_ptr<session_handler> handler_;
  std::deque<frame_ptr> queue_;
  std::unique_ptr<net::steady_timer> kill_timer_;
  std::string close_reason_;
  std::uint16_t close_code_ = 0;
  bool writing_ = false;
  bool reading_ = false;
  bool close_after_flush_ = false;
  bool close_started_ = false;
  bool finished_ = false;
  std::atomic<phase> phase_{phase::open};
  std::atomic<bool> slow_{false};
  std::atomic<bool> read_paused_{false};
  std::atomic<std::size_t> queued_bytes_{0};
  std::atomic<std::size_t> pending_input_{0};
};

} // namespace

void start_ws_session(std::shared_ptr<server_context> ctx, tcp::socket&& socket,
                      http::request<http::string_body>&& req, session_identity who) {
  std::make_shared<ws_session>(std::move(ctx), std::move(socket), std::move(who))
      ->run(std::move(req));
}

} // namespace wsnode::transport
