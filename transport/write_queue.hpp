// The write queue of one connection: frames waiting for the kernel, handed
// to it many per system call (one gather write of up to max_batch frames)
// straight from a non-blocking socket. A shared client frame is queued by
// reference with its header built here, never copied.
#pragma once

#include "core/metrics.hpp"
#include "core/ports.hpp"
#include "protocol/websocket.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace wsnode::transport {

/// Frames written to the kernel in one call at most (and so iovecs x2,
/// far below IOV_MAX).
inline constexpr std::size_t max_batch = 64;

/// One queued write: a shared client frame (header built here), or whole
/// frame bytes (the 101 response, control frames, compressed messages).
struct out_entry {
  frame_ptr frame;
  std::string raw;
  protocol::ws::frame_header header;
  std::size_t size() const { return frame ? header.size + frame->size() : raw.size(); }
};

/// Not thread-safe: used on the connection's io thread only. Its bytes are
/// also counted in `metrics::queued_bytes`, and written client frames in
/// `metrics::messages_out`.
class write_queue {
public:
  explicit write_queue(metrics& m) noexcept : m_(m) {}
  write_queue(const write_queue&) = delete;
  write_queue& operator=(const write_queue&) = delete;
  ~write_queue();

  void push(out_entry&& e);
  /// Nothing left to write.
  bool empty() const noexcept { return head_ == out_.size(); }
  /// Bytes queued and not yet written.
  std::size_t bytes() const noexcept { return bytes_; }

  /// What one write() ended with.
  enum class outcome : std::uint8_t {
    drained, ///< everything queued reached the kernel
    blocked, ///< the kernel's buffer is full: wait for the socket to be writable
    failed,  ///< `ec` says why; the connection is unusable
  };
  /// Writes from the head until the queue is empty or the kernel refuses
  /// more; `iov` is scratch space for the gather list. `Stream` is the
  /// connection's non-blocking socket (a test passes a stream of its own):
  /// `write_some(iov, ec)` returns the bytes taken, with `ec` would_block
  /// or try_again when the kernel's buffer is full.
  template <class Stream>
  outcome write(Stream& s, std::vector<boost::asio::const_buffer>& iov,
                boost::system::error_code& ec) {
    while (head_ < out_.size()) {
      auto end = gather(iov);
      auto n = s.write_some(iov, ec);
      if (auto o = wrote(n, end, ec); o != outcome::drained)
        return o;
    }
    all_written();
    return outcome::drained;
  }

  /// Drops every entry not yet begun (a partly written one stays: its rest
  /// must follow or the client's framing breaks); returns how many client
  /// frames were dropped.
  std::uint64_t discard_unsent();
  /// An idle connection keeps no queue memory (call when empty).
  void free_memory() noexcept;

private:
  /// Fills `iov` from the head (at most max_batch frames); returns the end
  /// of the entries it covers.
  std::size_t gather(std::vector<boost::asio::const_buffer>& iov) const;
  /// A write_some() took `n` bytes of [head_, end): `drained` to go on.
  outcome wrote(std::size_t n, std::size_t end, boost::system::error_code& ec);
  void all_written() noexcept;
  void retire(std::size_t n, std::size_t end);
  void release(std::size_t n) noexcept;

  metrics& m_;
  std::vector<out_entry> out_; // [head_, end) not yet written
  std::size_t head_ = 0;
  std::size_t partial_ = 0; // bytes of out_[head_] already written
  std::size_t bytes_ = 0;
};

} // namespace wsnode::transport
