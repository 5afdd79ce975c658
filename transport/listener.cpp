// The accept loop and the server facade.
#include "transport/delivery_lane.hpp"
#include "transport/http_session.hpp"
#include "transport/io_pool.hpp"
#include "transport/server.hpp"
#include "transport/ws_session.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include <system_error>

namespace wsnode::transport {

namespace net = boost::asio;
using tcp = net::ip::tcp;

/// Threading: the acceptor is used on the pool's first io_context only.
struct server::impl : std::enable_shared_from_this<server::impl> {
  impl(io_pool& p, server_options opts, node_port& node, metrics& m)
    : pool(p), ctx(std::make_shared<server_context>(std::move(opts), node, m)),
      acceptor(p.context(0)), retry(p.context(0)) {
    for (std::size_t i = 0; i < p.size(); ++i)
      ctx->lanes.push_back(make_lane(p.context(i), m, ctx->opts.coalesce, ctx->opts.ping_interval,
                                     ctx->opts.flush_helper_min));
  }

  void start() {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(ctx->opts.host, ec);
    if (ec)
      throw std::system_error(ec, "bad listen address " + ctx->opts.host);
    tcp::endpoint ep{addr, ctx->opts.port};
    acceptor.open(ep.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep, ec);
    if (ec)
      throw std::system_error(ec, "cannot listen on " + ctx->opts.host + ":" +
                                      std::to_string(ctx->opts.port));
    acceptor.listen(net::socket_base::max_listen_connections);
    net::post(acceptor.get_executor(), [self = shared_from_this()] { self->do_accept(); });
  }

  // Each connection goes to the next io_context, round robin.
  void do_accept() {
    auto lane = next_lane++ % pool.size();
    acceptor.async_accept(pool.context(lane), [self = shared_from_this(), lane](
                                                  boost::system::error_code ec, stream_socket s) {
      self->on_accept(ec, std::move(s), lane);
    });
  }

  void on_accept(boost::system::error_code ec, stream_socket s, std::size_t lane) {
    if (ec == net::error::operation_aborted || !acceptor.is_open())
      return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: out of descriptors or memory. Back off instead
      // of spinning; established connections keep being served.
      if (!warned_) {
        spdlog::warn("accept failed: {}; retrying every 100 ms", ec.message());
        warned_ = true;
      }
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([self = shared_from_this()](boost::system::error_code e) {
        if (!e)
          self->do_accept();
      });
      return;
    }
    warned_ = false;
    boost::system::error_code ignored;
    s.set_option(tcp::no_delay(true), ignored); // small frames: no Nagle stalls
    start_http_session(ctx, std::move(s), lane);
    do_accept();
  }

  void stop() {
    net::post(acceptor.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->acceptor.close(ec);
      self->retry.cancel();
    });
  }

  io_pool& pool;
  std::shared_ptr<server_context> ctx;
  tcp::acceptor acceptor;
  net::steady_timer retry;
  std::size_t next_lane = 0;
  bool warned_ = false;
};

server::server(io_pool& pool, server_options opts, node_port& node, metrics& m)
  : impl_(std::make_shared<impl>(pool, std::move(opts), node, m)) {}

server::~server() {
  impl_->stop();
}

void server::start() {
  impl_->start();
}

void server::set_draining() {
  impl_->ctx->draining = true;
}

void server::reload(access_policy a) {
  impl_->ctx->access.set(std::make_shared<const access_policy>(std::move(a)));
}

void server::stop_accepting() {
  impl_->stop();
}

std::uint16_t server::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

} // namespace wsnode::transport
