// One connection's write queue (transport/write_queue.hpp) against a
// stream of the test's own: how much the "kernel" takes per call decides
// partial writes, a full buffer and failure.
#include "transport/write_queue.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <doctest/doctest.h>

using namespace wsnode;
using namespace wsnode::transport;
namespace net = boost::asio;

namespace {

// Takes at most `room` bytes per call (0: full, would_block); `fail` breaks it.
struct fake_stream {
  std::size_t room = 1 << 20;
  bool fail = false;
  std::string written;
  int calls = 0;
  std::size_t write_some(const std::vector<net::const_buffer>& iov, boost::system::error_code& ec) {
    ++calls;
    if (fail) {
      ec = net::error::broken_pipe;
      return 0;
    }
    if (room == 0) {
      ec = net::error::would_block;
      return 0;
    }
    std::size_t n = 0;
    for (const auto& b : iov) {
      auto take = std::min(b.size(), room - n);
      written.append(static_cast<const char*>(b.data()), take);
      n += take;
      if (n == room)
        break;
    }
    return n;
  }
};

out_entry shared(const frame_ptr& f) {
  out_entry e;
  e.frame = f;
  e.header = protocol::ws::frame_header{protocol::ws::opcode::text, f->size()};
  return e;
}

out_entry raw(std::string bytes) {
  out_entry e;
  e.raw = std::move(bytes);
  return e;
}

// The bytes of a text frame carrying `payload` (a short one).
std::string text_frame(const std::string& payload) {
  return std::string{"\x81"} + static_cast<char>(payload.size()) + payload;
}

struct queue_fixture {
  metrics m;
  fake_stream s;
  std::vector<net::const_buffer> iov;
  boost::system::error_code ec;
};

} // namespace

TEST_CASE_FIXTURE(queue_fixture,
                  "write_queue: one gather write for many frames, shared frames not copied") {
  auto f = make_frame("hello");
  {
    write_queue q{m};
    q.push(raw("RAW"));
    q.push(shared(f));
    q.push(shared(f));
    CHECK(q.bytes() == 3 + 2 * 7);
    CHECK(m.queued_bytes.load() == 17);
    CHECK(q.write(s, iov, ec) == write_queue::outcome::drained);
    CHECK_FALSE(ec);
    CHECK(s.calls == 1);
    CHECK(s.written == "RAW" + text_frame("hello") + text_frame("hello"));
    CHECK(q.empty());
    CHECK(m.messages_out.load() == 2); // client frames, not our own raw bytes
    CHECK(m.socket_writes.load() == 1);
    CHECK(m.bytes_out.load() == 17);
    CHECK(m.queued_bytes.load() == 0);
  }
  CHECK(f.use_count() == 1); // the queue kept references, never copies
}

TEST_CASE_FIXTURE(queue_fixture,
                  "write_queue: a partial write resumes mid-frame; a full kernel blocks") {
  write_queue q{m};
  q.push(shared(make_frame("abcdef")));
  q.push(shared(make_frame("xyz")));
  s.room = 4; // the header and 2 bytes of the first
  CHECK(q.write(s, iov, ec) == write_queue::outcome::blocked);
  CHECK(s.written == text_frame("abcdef").substr(0, 4));
  CHECK(m.messages_out.load() == 0);
  s.room = 0;
  CHECK(q.write(s, iov, ec) == write_queue::outcome::blocked);
  CHECK_FALSE(ec); // would_block is no error
  // what is begun is kept by discard_unsent: the client's framing must not break
  CHECK(q.discard_unsent() == 1);
  s.room = 1 << 20;
  CHECK(q.write(s, iov, ec) == write_queue::outcome::drained);
  CHECK(s.written == text_frame("abcdef"));
  CHECK(m.messages_out.load() == 1);
  CHECK(m.queued_bytes.load() == 0);
}

TEST_CASE_FIXTURE(queue_fixture, "write_queue: more than max_batch frames take several calls") {
  write_queue q{m};
  auto f = make_frame("x");
  for (std::size_t i = 0; i < max_batch * 2 + 1; ++i)
    q.push(shared(f));
  CHECK(q.write(s, iov, ec) == write_queue::outcome::drained);
  CHECK(s.calls == 3);
  CHECK(iov.size() <= 2 * max_batch);
  CHECK(m.messages_out.load() == max_batch * 2 + 1);
}

TEST_CASE_FIXTURE(queue_fixture,
                  "write_queue: a failed stream reports failed; queued bytes are released") {
  {
    write_queue q{m};
    q.push(shared(make_frame("a")));
    s.fail = true;
    CHECK(q.write(s, iov, ec) == write_queue::outcome::failed);
    CHECK(ec == net::error::broken_pipe);
    CHECK(m.queued_bytes.load() == 3);
  }
  CHECK(m.queued_bytes.load() == 0); // the destructor gives back what it held
}
