// Events for the application (webhooks, protocol v1.2): what happened on
// the node, sent in signed batches to [hooks] events_url
// (transport/event_sender implements `event_port`; the session actor
// emits). At least once: see docs/operations.md "Webhooks".
#pragma once

#include <cstdint>
#include <string>

namespace wsnode {

/// The kinds of events (DESIGN.md v1.2 "Events").
enum class event_kind : std::uint8_t {
  connect,
  disconnect,
  occupied,
  vacated,
  join,
  leave,
  undelivered
};
inline constexpr int event_kind_count = 7;

/// The kind's wire name ("connect", ...).
constexpr const char* to_string(event_kind k) noexcept {
  switch (k) {
  case event_kind::connect:
    return "connect";
  case event_kind::disconnect:
    return "disconnect";
  case event_kind::occupied:
    return "occupied";
  case event_kind::vacated:
    return "vacated";
  case event_kind::join:
    return "join";
  case event_kind::leave:
    return "leave";
  case event_kind::undelivered:
    break;
  }
  return "undelivered";
}

/// Takes events for the application. Thread-safe; never blocks.
class event_port {
public:
  virtual ~event_port() = default;
  /// True when events of kind `k` are configured ([hooks] events).
  virtual bool wants(event_kind k) const noexcept = 0;
  /// Queues one event: `fields` are its members after id, type and time,
  /// as JSON text without braces (`"sid":"n1-3","user":"ann"`). A full
  /// queue drops it (counted).
  virtual void emit(event_kind k, std::string fields) = 0;
};

} // namespace wsnode
