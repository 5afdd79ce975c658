// Events for the application (webhooks, protocol v1.2): what happened on
// the node, sent in signed batches to [hooks] events_url
// (transport/event_sender implements `event_port`; the session actor
// emits). At least once: see docs/operations.md "Webhooks".
#pragma once

#include <cstdint>
#include <string>

namespace wsnode {

/// The kinds this version sends (DESIGN.md's others are refused by the config).
enum class event_kind : std::uint8_t { connect, disconnect };
inline constexpr int event_kind_count = 2;

/// The kind's wire name ("connect", ...).
constexpr const char* to_string(event_kind k) noexcept {
  return k == event_kind::connect ? "connect" : "disconnect";
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
