// Atoms and message types exchanged between wsnode's actors (CAF 0.17).
#pragma once

#include "actors/ports.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsnode {

/// One message read from a client (transport -> session actor).
struct client_message {
  std::string text;
  bool binary = false;
};
/// The messages of one read, in order.
using client_messages = std::vector<client_message>;

/// A completion callback carried through a mailbox (HTTP API replies).
struct api_completion {
  api_done fn;
};

} // namespace wsnode

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::frame_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::sink_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::api_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsnode::client_messages)

namespace wsnode::atoms {

// session -> broker
using join = caf::atom_constant<caf::atom("join")>;   ///< (sid, user, sink, hello frame)
using leave = caf::atom_constant<caf::atom("leave")>; ///< (sid)
using sub = caf::atom_constant<caf::atom("sub")>;     ///< (sid, ch, reply slot, sink)
using unsub = caf::atom_constant<caf::atom("unsub")>; ///< (sid, ch)
using pub = caf::atom_constant<caf::atom("pub")>;     ///< (ch, frame[, completion])
using dm = caf::atom_constant<caf::atom("dm")>;       ///< (user, frame[, completion])

// transport -> session actor (see session.cpp)
using input = caf::atom_constant<caf::atom("input")>; ///< (client_messages) one read
using event = caf::atom_constant<caf::atom("event")>; ///< (session_event, arg) from the broker
using input_end = caf::atom_constant<caf::atom("input_end")>; ///< (code) close frame or violation
using closed = caf::atom_constant<caf::atom("closed")>;       ///< () the connection is gone

// backbone -> broker
using remote = caf::atom_constant<caf::atom("remote")>;   ///< (kind, name, frame)
using mesh_ok = caf::atom_constant<caf::atom("mesh_ok")>; ///< (kind, name) subscription live
using tick = caf::atom_constant<caf::atom("tick")>;       ///< () housekeeping timer

// node -> broker
using drain = caf::atom_constant<caf::atom("drain")>;       ///< () close sessions with 1001
using shutdown = caf::atom_constant<caf::atom("shutdown")>; ///< () exit sessions, quit
using stats = caf::atom_constant<caf::atom("stats")>;       ///< () -> (sessions, channels, users)

} // namespace wsnode::atoms
