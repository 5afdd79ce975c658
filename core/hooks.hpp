// The application's hooks as actors and transport see them: transport
// implements `hook_port` (HTTP/1.1 to the application: transport/hook_client),
// the session actor and the upgrade call it. Answers are checked before
// they get here (protocol/hook_codec.hpp).
#pragma once

#include "protocol/hook_codec.hpp"

#include <functional>
#include <string>

namespace wsnode {

using protocol::hook_answer;
using protocol::hook_kind;

/// Receives a hook call's answer, exactly once, on the hook client's thread.
using hook_done = std::function<void(hook_answer)>;

/// Calls the application. Thread-safe.
class hook_port {
public:
  virtual ~hook_port() = default;
  /// True when hook `k` has a URL.
  virtual bool has(hook_kind k) const noexcept = 0;
  /// POSTs `body` to hook `k`'s URL and answers `done` with the checked
  /// answer, or a failure. Never blocks: past [hooks] max_in_flight calls
  /// wait in a FIFO; every call is answered within [hooks] timeout_ms of
  /// this call. `k` must have a URL.
  virtual void call(hook_kind k, std::string body, hook_done done) = 0;
};

} // namespace wsnode
