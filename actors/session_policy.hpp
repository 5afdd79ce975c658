// Who may do what in a session: the namespace rules of protocol v1.1
// (private channels, publish rights) and token refresh, as plain functions
// the session actor calls (docs/protocol.md "Private channels and tokens").
#pragma once

#include "actors/namespaces.hpp"
#include "core/metrics.hpp"
#include "protocol/auth_token.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::actors {

/// A command refused by policy: the metrics reason and the err message.
struct refusal {
  refusal_reason reason;
  std::string msg;
};

/// What the connection's token grants (its `channels` claim).
struct session_grants {
  std::vector<std::string> channels;
  bool lists(std::string_view ch) const noexcept;
};

/// Whether `user` may join `ch` (sub; also history and presence of a
/// channel it is not subscribed to): always in a namespace with subscribe =
/// "anyone"; with "token", when the connection's `channels` claim lists it
/// or `token` is a subscription token verified by `v` with `sub` = user,
/// `ch` = ch and an `exp`. nullopt: allowed.
std::optional<refusal> may_join(const namespace_options& ns, std::string_view ch,
                                std::string_view token, std::string_view user,
                                const session_grants& grants, const protocol::token_verifier* v);

/// Whether the session holds a grant for `ch` whatever the namespace's
/// rule: its `channels` claim lists it, or `token` is a valid subscription
/// token for it (may_join's test in a private namespace). nullopt: it does.
std::optional<refusal> check_grant(std::string_view ch, std::string_view token,
                                   std::string_view user, const session_grants& grants,
                                   const protocol::token_verifier* v);

/// Whether a client may publish into a channel of `ns` (`subscribed`: it
/// is subscribed to it). The HTTP API always may.
std::optional<refusal> may_publish(const namespace_options& ns, bool subscribed);

/// The verdict on a `refresh`.
struct refresh_verdict {
  enum class kind : std::uint8_t { ok, bad_token, other_user, no_auth } what = kind::ok;
  std::optional<std::int64_t> exp;   ///< the new token's `exp`
  std::vector<std::string> channels; ///< its `channels` claim
  std::string msg;                   ///< why, when not ok
};

/// Checks a refresh token of the session of `user` with `v` (null: dev mode).
refresh_verdict check_refresh(std::string_view token, std::string_view user,
                              const protocol::token_verifier* v);

} // namespace wsnode::actors
