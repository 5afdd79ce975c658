#include "transport/write_queue.hpp"

#include <boost/asio/error.hpp>

#include <algorithm>

namespace wsnode::transport {

namespace net = boost::asio;

write_queue::~write_queue() {
  if (bytes_ > 0)
    bump(m_.queued_bytes, -static_cast<std::int64_t>(bytes_));
}

void write_queue::push(out_entry&& e) {
  auto n = e.size();
  bytes_ += n;
  bump(m_.queued_bytes, static_cast<std::int64_t>(n));
  out_.push_back(std::move(e));
}

std::size_t write_queue::gather(std::vector<net::const_buffer>& iov) const {
  auto end = std::min(out_.size(), head_ + max_batch);
  iov.clear();
  std::size_t skip = partial_; // bytes of out_[head_] sent before
  auto add = [&](const void* p, std::size_t n) {
    if (skip >= n) {
      skip -= n;
      return;
    }
    iov.emplace_back(static_cast<const char*>(p) + skip, n - skip);
    skip = 0;
  };
  for (auto i = head_; i < end; ++i) {
    const auto& e = out_[i];
    if (e.frame) {
      add(e.header.bytes.data(), e.header.size);
      add(e.frame->data(), e.frame->size());
    } else {
      add(e.raw.data(), e.raw.size());
    }
  }
  return end;
}

write_queue::outcome write_queue::wrote(std::size_t n, std::size_t end,
                                        boost::system::error_code& ec) {
  if (ec == net::error::would_block || ec == net::error::try_again) {
    ec = {};
    n = 0;
  }
  if (ec)
    return outcome::failed;
  if (n > 0) {
    bump(m_.socket_writes, 1);
    bump(m_.bytes_out, n);
  }
  retire(n, end);
  return head_ < end ? outcome::blocked : outcome::drained; // blocked: the kernel took part
}

void write_queue::all_written() noexcept {
  if (head_ > 0) {
    out_.clear(); // the capacity stays for the next burst (see free_memory)
    head_ = 0;
  }
}

// `n` more bytes of out_[head_, end) reached the kernel.
void write_queue::retire(std::size_t n, std::size_t end) {
  std::size_t left = n + partial_;
  std::uint64_t frames = 0;
  while (head_ < end && left >= out_[head_].size()) {
    auto& e = out_[head_];
    left -= e.size();
    release(e.size());
    frames += e.frame ? 1 : 0;
    e = out_entry{};
    ++head_;
  }
  partial_ = left;
  bump(m_.messages_out, frames);
}

std::uint64_t write_queue::discard_unsent() {
  std::size_t keep = std::min(out_.size(), head_ + (partial_ > 0 ? 1 : 0));
  std::uint64_t dropped = 0;
  while (out_.size() > keep) {
    release(out_.back().size());
    dropped += out_.back().frame ? 1 : 0;
    out_.pop_back();
  }
  return dropped;
}

void write_queue::free_memory() noexcept {
  if (out_.empty() && out_.capacity() > 0)
    out_ = {};
}

void write_queue::release(std::size_t n) noexcept {
  bytes_ -= n;
  bump(m_.queued_bytes, -static_cast<std::int64_t>(n));
}

} // namespace wsnode::transport
