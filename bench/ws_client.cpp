#include "bench/ws_client.hpp"
#include "bench/report.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <netinet/in.h>

namespace wsnode::bench {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

namespace {

// Connects `sock` from source address 127.0.0.(1 + k % n): more than one
// source address lifts the limit of ~28k ephemeral ports per destination.
void bind_source(tcp::socket& sock, std::size_t k, std::size_t n) {
  if (n <= 1)
    return;
  error_code ec;
  sock.open(tcp::v4(), ec);
  int one = 1;
  ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  net::ip::address_v4::bytes_type b{127, 0, 0, static_cast<unsigned char>(1 + k % n)};
  sock.bind({net::ip::address_v4(b), 0}, ec);
}

constexpr std::size_t max_upgrade_response = 16 * 1024;
constexpr std::size_t max_message = 64u << 20;
// reads of one readable socket before the others get their turn
constexpr int reads_per_turn = 64;

enum : std::uint8_t { op_cont = 0, op_text = 1, op_binary = 2, op_close = 8, op_ping = 9, op_pong = 10 };

} // namespace

ws_client::ws_client(engine::impl& e, worker& w, std::size_t index, client_spec spec)
  : e_(e), w_(w), index_(index), spec_(std::move(spec)), codec_(make_codec(e.opts.proto)),
    sock_(w.ioc), mask_seed_(static_cast<std::uint32_t>(index * 2654435761u + 1)) {}

void ws_client::start(int attempt) {
  attempt_ = attempt;
  bind_source(sock_, index_, e_.opts.sources);
  tcp::endpoint ep{net::ip::make_address(e_.opts.ws.host), e_.opts.ws.port};
  sock_.async_connect(ep, [self = shared_from_this()](error_code ec) {
    if (ec)
      return self->fail();
    error_code ignored;
    self->sock_.set_option(tcp::no_delay(true), ignored);
    self->sock_.non_blocking(true, ignored);
    self->state_ = state::upgrading;
    auto channel = self->spec_.channels.empty() ? std::string{} : self->spec_.channels.front();
    // a fixed key: wsbench does not check the server's Sec-WebSocket-Accept
    self->out_ = "GET " + self->codec_->path(self->spec_.user, channel) +
                 " HTTP/1.1\r\nHost: " + self->e_.opts.ws.host + ":" +
                 std::to_string(self->e_.opts.ws.port) +
                 "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: d3NiZW5jaC1rZXktMDAwMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    self->flush();
    self->wait_readable();
  });
}

void ws_client::send(std::string payload) {
  net::post(w_.ioc, [self = shared_from_this(), p = std::move(payload)] {
    self->queue(op_text, p);
  });
}

void ws_client::close() {
  net::post(w_.ioc, [self = shared_from_this()] {
    self->closing_ = true;
    if (self->state_ != state::open)
      return self->end();
    const char code[2] = {0x03, static_cast<char>(0xe8)}; // 1000
    self->queue(op_close, {code, 2});
  });
}

void ws_client::fail() {
  end();
  if (ready_ || closing_)
    return; // a drop after the client was counted; deliveries tell the rest
  closing_ = true;
  e_.opened(false);
}

void ws_client::end() {
  state_ = state::closed;
  error_code ignored;
  sock_.close(ignored);
}

void ws_client::on_ready() {
  if (!spec_.avoid_node.empty() && node_ == spec_.avoid_node && attempt_ < 20) {
    // landed on the partner's node: reconnect for another one
    auto again = std::make_shared<ws_client>(e_, w_, index_, spec_);
    {
      std::lock_guard<std::mutex> g{e_.mu};
      e_.clients[index_] = again;
    }
    closing_ = true;
    end();
    again->start(attempt_ + 1);
    return;
  }
  for (const auto& ch : spec_.channels) {
    auto f = codec_->subscribe(ch, next_id());
    if (f.empty())
      continue;
    ++pending_subs_;
    queue(op_text, f);
  }
  if (pending_subs_ == 0) {
    ready_ = true;
    e_.opened(true);
  }
}

void ws_client::wait_readable() {
  sock_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
    if (ec || self->state_ == state::closed)
      return self->fail();
    self->on_readable();
  });
}

void ws_client::on_readable() {
  auto& st = w_.stats;
  for (int i = 0; i < reads_per_turn; ++i) {
    error_code ec;
    auto n = sock_.read_some(net::buffer(w_.rx.get(), worker_rx_bytes), ec);
    if (ec == net::error::would_block || ec == net::error::try_again)
      break;
    if (ec)
      return fail(); // eof included: the server went away
    ++st.reads;
    st.read_bytes += n;
    if (!take({w_.rx.get(), n}))
      return fail();
    if (state_ == state::closed)
      return;
    if (n < worker_rx_bytes)
      break; // the kernel had no more (saves the read that says EAGAIN)
  }
  wait_readable();
}

bool ws_client::take(std::string_view bytes) {
  if (state_ == state::upgrading)
    return take_upgrade(bytes);
  if (rx_.empty()) {
    auto used = frames(bytes);
    if (used == std::string_view::npos)
      return false;
    rx_.assign(bytes.substr(used));
    return true;
  }
  rx_.append(bytes);
  auto used = frames(rx_);
  if (used == std::string_view::npos)
    return false;
  rx_.erase(0, used);
  return true;
}

bool ws_client::take_upgrade(std::string_view bytes) {
  rx_.append(bytes);
  auto end_of_head = rx_.find("\r\n\r\n");
  if (end_of_head == std::string::npos)
    return rx_.size() < max_upgrade_response;
  if (rx_.compare(0, 12, "HTTP/1.1 101") != 0)
    return false; // refused (401, 403, 503...)
  state_ = state::open;
  auto rest = rx_.substr(end_of_head + 4);
  rx_.clear();
  if (codec_->ready_on_open())
    on_ready();
  return rest.empty() || take(rest);
}

std::size_t ws_client::frames(std::string_view in) {
  std::size_t pos = 0;
  while (state_ == state::open) {
    auto left = in.size() - pos;
    if (left < 2)
      break;
    auto b0 = static_cast<std::uint8_t>(in[pos]);
    auto b1 = static_cast<std::uint8_t>(in[pos + 1]);
    if ((b1 & 0x80) != 0 || (b0 & 0x70) != 0)
      return std::string_view::npos; // a server never masks; no extensions asked
    std::uint64_t len = b1 & 0x7f;
    std::size_t head = 2;
    if (len == 126) {
      if (left < 4)
        break;
      len = (std::uint64_t(std::uint8_t(in[pos + 2])) << 8) | std::uint8_t(in[pos + 3]);
      head = 4;
    } else if (len == 127) {
      if (left < 10)
        break;
      len = 0;
      for (int k = 0; k < 8; ++k)
        len = (len << 8) | std::uint8_t(in[pos + 2 + k]);
      head = 10;
    }
    if (len > max_message)
      return std::string_view::npos;
    if (left - head < len)
      break;
    auto payload = in.substr(pos + head, len);
    pos += head + len;
    bool fin = (b0 & 0x80) != 0;
    switch (b0 & 0x0f) {
    case op_text:
    case op_binary:
      if (fin) {
        on_message(payload);
      } else {
        fragments_.assign(payload);
      }
      break;
    case op_cont:
      fragments_.append(payload);
      if (fragments_.size() > max_message)
        return std::string_view::npos;
      if (fin) {
        std::string m = std::move(fragments_);
        fragments_.clear();
        on_message(m);
      }
      break;
    case op_ping:
      queue(op_pong, payload);
      break;
    case op_pong:
      break;
    case op_close:
      if (!closing_) {
        closing_ = true;
        queue(op_close, payload.substr(0, 2));
      }
      state_ = state::closed; // the socket ends once the close is written
      if (!in_write_ && out_.empty())
        end(); // the answer to our close
      break;
    default:
      return std::string_view::npos;
    }
  }
  return pos;
}

void ws_client::on_message(std::string_view f) {
  replies_.clear();
  auto ev = codec_->on_frame(f, replies_);
  for (auto& r : replies_)
    queue(op_text, r);
  switch (ev.kind) {
  case event::message: {
    auto s = read_stamp(ev.body);
    if (!s)
      return;
    auto now = now_ns();
    auto& st = w_.stats;
    auto it = std::find_if(seen_.begin(), seen_.end(),
                           [&](const auto& p) { return p.first == s->sender; });
    if (it == seen_.end()) {
      seen_.emplace_back(s->sender, seen_window{});
      it = seen_.end() - 1;
    }
    if (!it->second.first_time(s->seq)) {
      ++st.duplicates;
      return;
    }
    ++st.delivered;
    e_.owner.delivered_.fetch_add(1, std::memory_order_relaxed);
    if (s->sender == 1)
      e_.delivered_tracked(s->seq);
    st.latency.record(now > s->sent_ns ? (now - s->sent_ns) / 1000 : 0);
    return;
  }
  case event::ready:
    if (e_.opts.proto == protocol::wsnode) {
      auto pos = f.find(R"("node":")");
      if (pos != std::string_view::npos) {
        auto rest = f.substr(pos + 8);
        node_ = std::string{rest.substr(0, rest.find('"'))};
      }
    }
    if (!ready_ && pending_subs_ == 0)
      on_ready();
    return;
  case event::ack:
    if (pending_subs_ > 0) {
      if (--pending_subs_ == 0 && !ready_) {
        ready_ = true;
        e_.opened(true);
      }
      return;
    }
    e_.owner.in_flight_.fetch_sub(1);
    return;
  case event::error:
    ++w_.stats.errors;
    if (pending_subs_ == 0)
      e_.owner.in_flight_.fetch_sub(1);
    return;
  case event::none:
    return;
  }
}

// A client frame: header, a mask key, the payload masked with it.
void ws_client::queue(std::uint8_t opcode, std::string_view payload) {
  if (state_ == state::closed && opcode != op_close)
    return;
  auto n = payload.size();
  out_.push_back(static_cast<char>(0x80 | opcode));
  if (n < 126) {
    out_.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    out_.push_back(static_cast<char>(0x80 | 126));
    out_.push_back(static_cast<char>(n >> 8));
    out_.push_back(static_cast<char>(n & 0xff));
  } else {
    out_.push_back(static_cast<char>(0x80 | 127));
    for (int k = 7; k >= 0; --k)
      out_.push_back(static_cast<char>((std::uint64_t(n) >> (8 * k)) & 0xff));
  }
  mask_seed_ ^= mask_seed_ << 13; // xorshift32
  mask_seed_ ^= mask_seed_ >> 17;
  mask_seed_ ^= mask_seed_ << 5;
  char key[4];
  for (int k = 0; k < 4; ++k)
    key[k] = static_cast<char>((mask_seed_ >> (8 * k)) & 0xff);
  out_.append(key, 4);
  auto at = out_.size();
  out_.append(payload);
  for (std::size_t k = 0; k < n; ++k)
    out_[at + k] = static_cast<char>(out_[at + k] ^ key[k & 3]);
  flush();
}

// Everything queued goes out in one write; what is queued meanwhile waits
// for the next.
void ws_client::flush() {
  if (in_write_ || out_.empty())
    return;
  in_write_ = true;
  writing_.swap(out_);
  out_.clear();
  net::async_write(sock_, net::buffer(writing_),
                   [self = shared_from_this()](error_code ec, std::size_t) {
                     self->in_write_ = false;
                     self->writing_.clear();
                     if (ec)
                       return self->fail();
                     if (self->state_ == state::closed && self->out_.empty())
                       return self->end(); // our close (or the echo of the server's) is out
                     self->flush();
                   });
}

} // namespace wsnode::bench
