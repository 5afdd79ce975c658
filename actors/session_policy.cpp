#include "actors/session_policy.hpp"

#include <algorithm>

namespace wsnode::actors {

bool session_grants::lists(std::string_view ch) const noexcept {
  return std::find(channels.begin(), channels.end(), ch) != channels.end();
}

std::optional<refusal> may_join(const namespace_options& ns, std::string_view ch,
                                std::string_view token, std::string_view user,
                                const session_grants& grants, const protocol::token_verifier* v) {
  if (ns.subscribe == subscribe_rule::anyone)
    return std::nullopt;
  return check_grant(ch, token, user, grants, v);
}

std::optional<refusal> check_grant(std::string_view ch, std::string_view token,
                                   std::string_view user, const session_grants& grants,
                                   const protocol::token_verifier* v) {
  if (grants.lists(ch))
    return std::nullopt;
  if (token.empty())
    return refusal{refusal_reason::no_grant,
                   "private channel: subscribe with a subscription token (token) or a "
                   "connection token whose channels claim lists it"};
  if (v == nullptr)
    return refusal{refusal_reason::bad_sub_token,
                   "private channel: this node has no keys to verify subscription tokens"};
  auto r = v->verify(token);
  if (!r.user)
    return refusal{refusal_reason::bad_sub_token, "bad subscription token: " + r.error};
  if (*r.user != user)
    return refusal{refusal_reason::bad_sub_token, "subscription token is for another user"};
  if (r.ch != ch)
    return refusal{refusal_reason::bad_sub_token, "subscription token is for another channel"};
  if (!r.exp)
    return refusal{refusal_reason::bad_sub_token, "subscription token has no exp"};
  return std::nullopt;
}

std::optional<refusal> may_publish(const namespace_options& ns, bool subscribed) {
  switch (ns.publish) {
  case publish_rule::anyone:
    return std::nullopt;
  case publish_rule::subscribers:
    if (subscribed)
      return std::nullopt;
    return refusal{refusal_reason::not_subscriber, "only subscribers may publish to this channel"};
  case publish_rule::server:
    return refusal{refusal_reason::publish_server, "clients may not publish to this namespace"};
  }
  return std::nullopt;
}

refresh_verdict check_refresh(std::string_view token, std::string_view user,
                              const protocol::token_verifier* v) {
  refresh_verdict out;
  if (v == nullptr) {
    out.what = refresh_verdict::kind::no_auth;
    out.msg = "refresh needs token auth ([auth] secret or public_key_file); this node is in dev "
              "mode";
    return out;
  }
  auto r = v->verify(token);
  if (!r.user) {
    out.what = refresh_verdict::kind::bad_token;
    out.msg = "bad token: " + r.error;
    return out;
  }
  if (*r.user != user) {
    out.what = refresh_verdict::kind::other_user;
    out.msg = "refresh token is for another user";
    return out;
  }
  out.exp = r.exp;
  out.channels = std::move(r.channels);
  return out;
}

} // namespace wsnode::actors
