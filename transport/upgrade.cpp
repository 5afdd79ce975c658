#include "transport/upgrade.hpp"

#include "protocol/auth_token.hpp"
#include "protocol/names.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>

namespace wsnode::transport {

namespace {

constexpr std::string_view dev_prefix = "/websocket/";

upgrade_decision refuse(unsigned status, reject_reason reason, std::string message) {
  upgrade_decision d;
  d.status = status;
  d.reason = reason;
  d.message = std::move(message);
  return d;
}

upgrade_decision accept(std::string user) {
  upgrade_decision d;
  d.user = std::move(user);
  return d;
}

// The decoded value of query parameter `key`, or nullopt when absent.
std::optional<std::string> param(const boost::urls::url_view& u, std::string_view key) {
  auto params = u.params();
  auto it = params.find(key);
  if (it == params.end())
    return std::nullopt;
  return std::string{(*it).value};
}

// Who the client is (the rest of decide_upgrade).
upgrade_decision decide_identity(const server_options& opts, const access_policy& access,
                                 const boost::urls::url_view& u, const std::string& path,
                                 bool dev_path) {
  if (opts.hooks && opts.hooks->has(hook_kind::connect)) {
    upgrade_decision d;
    d.ask_hook = true;
    d.query = u.encoded_query();
    d.token = param(u, "token");
    return d;
  }
  if (access.verifier) {
    if (dev_path)
      return refuse(401, reject_reason::auth, "dev-mode path disabled; use /ws?token=JWT");
    if (param(u, "user"))
      return refuse(401, reject_reason::auth,
                    "?user= is accepted in dev mode only; use ?token=JWT");
    auto token = param(u, "token");
    if (!token)
      return refuse(401, reject_reason::auth, "missing token");
    auto r = access.verifier->verify(*token);
    if (!r.user)
      return refuse(401, reject_reason::auth, "bad token: " + r.error);
    auto d = accept(std::move(*r.user));
    d.exp = r.exp;
    d.channels = std::move(r.channels);
    return d;
  }

  // dev mode: identity is whatever the client claims
  std::string user;
  if (dev_path) {
    user = path.substr(dev_prefix.size());
  } else if (auto p = param(u, "user")) {
    user = std::move(*p);
  } else {
    return refuse(401, reject_reason::auth, "missing user (dev mode: /ws?user=ID)");
  }
  if (!protocol::valid_user(user))
    return refuse(401, reject_reason::auth, "user ids are 1-64 chars of [A-Za-z0-9_.@-]");
  return accept(std::move(user));
}

} // namespace

bool is_ws_path(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  return path == "/ws" || (path.size() > dev_prefix.size() && path.starts_with(dev_prefix));
}

upgrade_decision decide_upgrade(const server_options& opts, const access_policy& access,
                                bool draining, std::string_view target, std::string_view origin) {
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed)
    return refuse(400, reject_reason::bad_request, "malformed request target");
  const auto& u = *parsed;
  std::string path = u.path();
  bool dev_path = path.size() > dev_prefix.size() && path.starts_with(dev_prefix);
  if (path != "/ws" && !dev_path)
    return refuse(404, reject_reason::bad_request, "no WebSocket endpoint here; use /ws");
  if (draining)
    return refuse(503, reject_reason::draining, "node draining; reconnect to another node");
  const auto& allowed = access.allowed_origins;
  if (!allowed.empty() && !origin.empty() &&
      std::find(allowed.begin(), allowed.end(), origin) == allowed.end() &&
      std::find(allowed.begin(), allowed.end(), "*") == allowed.end())
    return refuse(403, reject_reason::origin, "origin not allowed");
  bool batch = false;
  if (auto b = param(u, "batch")) {
    if (*b != "0" && *b != "1")
      return refuse(400, reject_reason::bad_request, "batch must be 0 or 1");
    batch = *b == "1";
  }
  auto d = decide_identity(opts, access, u, path, dev_path);
  d.batch = batch;
  return d;
}

} // namespace wsnode::transport
