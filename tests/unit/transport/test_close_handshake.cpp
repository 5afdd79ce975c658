// The end of a WebSocket connection as a plain state machine
// (transport/close_handshake.hpp): every path, no socket.
#include "transport/close_handshake.hpp"

#include <doctest/doctest.h>

using namespace wsnode::transport;
using kind = close_handshake::step::kind;
using phase = close_handshake::phase;
using steps = close_handshake::steps;

namespace {
close_handshake::step s(kind k, std::uint16_t code = 0, std::string reason = {}) {
  return {k, code, std::move(reason)};
}
} // namespace

TEST_CASE("close_handshake: we close first, the client answers, TCP closes once drained") {
  close_handshake h;
  CHECK(h.current() == phase::open);
  CHECK(h.on_close(1001, "node draining") ==
        steps{s(kind::arm_timer), s(kind::send_close, 1001, "node draining"), s(kind::skip_data)});
  CHECK(h.current() == phase::closing);
  CHECK(h.on_close(1000, "again").empty()); // once
  CHECK_FALSE(h.waits_for_drain());
  CHECK(h.on_drained().empty()); // the close frame is out; the answer is awaited
  CHECK(h.on_peer_close(1001) == steps{s(kind::check_drain)});
  CHECK(h.discarding_input());
  CHECK(h.waits_for_drain());
  CHECK(h.on_drained() == steps{s(kind::teardown)});
  CHECK(h.on_finished());
  CHECK_FALSE(h.on_finished());
  CHECK(h.current() == phase::closed);
  CHECK(h.final_code() == 1001); // ours
}

TEST_CASE("close_handshake: the client closes first: the session answers, then we echo") {
  close_handshake h;
  CHECK(h.on_peer_close(1000) == steps{s(kind::arm_timer), s(kind::tell_input_end, 1000)});
  CHECK(h.discarding_input());
  CHECK(h.current() == phase::open); // the session answers earlier messages first
  // the session closes with the client's code: echoed without a reason,
  // then a lingering close (shutdown once drained)
  CHECK(h.on_close(1000, {}) == steps{s(kind::send_close, 1000), s(kind::check_drain)});
  CHECK(h.on_drained() == steps{s(kind::shutdown_send)});
  CHECK(h.on_drained().empty()); // shut down once
  // a second close frame from the client changes nothing
  CHECK(h.on_peer_close(1000) == steps{s(kind::check_drain)});
  CHECK(h.peer_code() == 1000);
  CHECK(h.on_timer() == steps{s(kind::teardown)}); // the client never sends EOF
}

TEST_CASE("close_handshake: a violation closes with its reason after earlier replies") {
  close_handshake h;
  CHECK(h.on_violation(1009) == steps{s(kind::arm_timer), s(kind::tell_input_end, 1009)});
  CHECK(h.discarding_input());
  CHECK(h.on_close(1009, {}) ==
        steps{s(kind::send_close, 1009, "message too big"), s(kind::check_drain)});
  CHECK(h.on_violation(1002) == steps{s(kind::check_drain)}); // no second end of input
  close_handshake utf8;
  utf8.on_violation(1007);
  CHECK(utf8.on_close(1007, {}).at(0).reason == "invalid UTF-8");
  close_handshake framing;
  framing.on_violation(1002);
  CHECK(framing.on_close(1002, {}).at(0).reason == "protocol error");
  close_handshake given; // a reason the session gives is kept as it is
  given.on_violation(1002);
  CHECK(given.on_close(1002, "bad frame").at(0).reason == "bad frame");
  close_handshake echoed; // the client's own close code is echoed without one
  echoed.on_peer_close(1002);
  CHECK(echoed.on_close(1002, {}).at(0).reason.empty());
}

TEST_CASE("close_handshake: a client's close without a code is answered by an empty close") {
  close_handshake h;
  h.on_peer_close(1005);
  CHECK(h.on_close(1005, {}) == steps{s(kind::send_close, 1005), s(kind::check_drain)});
  CHECK(h.final_code() == 1005);
}

TEST_CASE("close_handshake: a session that does not close in time is closed anyway") {
  close_handshake h;
  h.on_peer_close(1000);
  CHECK(h.on_timer() == steps{s(kind::send_close, 1000), s(kind::check_drain), s(kind::arm_timer)});
  CHECK(h.current() == phase::closing);
  CHECK(h.on_timer() == steps{s(kind::teardown)});
  h.on_finished();
  CHECK(h.on_timer().empty());
}

TEST_CASE("close_handshake: a violation while our close is out lingers") {
  close_handshake h;
  CHECK(h.on_close(1013, "slow consumer") ==
        steps{s(kind::arm_timer), s(kind::send_close, 1013, "slow consumer"), s(kind::skip_data)});
  CHECK(h.on_violation(1002) == steps{s(kind::check_drain)});
  CHECK(h.on_drained() == steps{s(kind::shutdown_send)});
  CHECK(h.final_code() == 1013);
}

TEST_CASE("close_handshake: a connection that ends without a close counts as 1006") {
  close_handshake h;
  CHECK(h.on_finished());
  CHECK(h.final_code() == 1006);
  CHECK(h.on_close(1000, {}).empty()); // nothing after the end
}
