// Who may open a WebSocket: path, Origin and identity checks made on the
// HTTP upgrade request, before any WebSocket state exists.
#pragma once

#include "core/metrics.hpp"
#include "transport/server.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace wsnode::transport {

/// The answer to an upgrade request: 101 with the user, or an HTTP status
/// with a message and the metrics reason.
struct upgrade_decision {
  unsigned status = 101;
  std::string user;
  std::optional<std::int64_t> exp;   ///< the token's `exp`
  std::vector<std::string> channels; ///< the token's `channels` claim
  std::string message;
  reject_reason reason = reject_reason::bad_request;
  /// Accepted so far, but identity is the connect hook's to give: `query`
  /// (raw, without '?') and `token` (?token=, decoded) go to it.
  bool ask_hook = false;
  std::string query;
  std::optional<std::string> token;
  bool batch = false; ///< ?batch=1: the client reads merged frames
  bool accepted() const noexcept { return status == 101; }
};

/// Returns true when `target`'s path is a WebSocket endpoint (/ws, /websocket/...).
bool is_ws_path(std::string_view target);

/// Decides an upgrade of `target` (origin-form, with query) with `origin`
/// (the Origin header, empty when absent). Checks, in order: endpoint
/// (404), draining (503), Origin allow-list (403), identity (401): the
/// connect hook's when one is configured (`ask_hook`: the caller asks it),
/// else a token in ?token= when `access.verifier` is set, else dev mode
/// ?user= or /websocket/<user>. The connection limit is checked by the
/// caller.
upgrade_decision decide_upgrade(const server_options& opts, const access_policy& access,
                                bool draining, std::string_view target, std::string_view origin);

} // namespace wsnode::transport
