// [hooks]: the application's backend (docs/operations.md "[hooks]").
#include "app/config_reader.hpp"
#include "core/events.hpp"
#include "transport/hook_client.hpp"

#include <algorithm>

namespace wsnode::config_detail {

namespace {

// An HTTP header name (RFC 9110 token).
bool valid_header_name(std::string_view h) {
  return !h.empty() && h.size() <= 64 && std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
  });
}

} // namespace

void read_hooks(reader& r, config& c) {
  r.get("hooks", "connect_url", c.hook_connect_url);
  r.get("hooks", "refresh_url", c.hook_refresh_url);
  r.get("hooks", "subscribe_url", c.hook_subscribe_url);
  r.get("hooks", "publish_url", c.hook_publish_url);
  r.get("hooks", "rpc_url", c.hook_rpc_url);
  r.get("hooks", "events_url", c.hook_events_url);
  r.strings("hooks", "events", c.hook_events);
  r.get("hooks", "events_max_queue", c.hook_events_max_queue);
  r.millis("hooks", "timeout_ms", c.hook_timeout);
  r.get("hooks", "max_in_flight", c.hook_max_in_flight);
  r.strings("hooks", "forward_headers", c.hook_forward_headers);
  r.get("hooks", "secret", c.hook_secret);
  r.get("hooks", "max_answer_bytes", c.hook_max_answer_bytes);
}

void check_hooks(const config& c) {
  const std::pair<const char*, const std::string*> urls[] = {
      {"hooks.connect_url", &c.hook_connect_url},
      {"hooks.refresh_url", &c.hook_refresh_url},
      {"hooks.subscribe_url", &c.hook_subscribe_url},
      {"hooks.publish_url", &c.hook_publish_url},
      {"hooks.rpc_url", &c.hook_rpc_url},
      {"hooks.events_url", &c.hook_events_url}};
  for (const auto& [key, url] : urls)
    if (!url->empty())
      if (auto why = transport::check_hook_url(*url); !why.empty())
        throw config_error(key, "\"" + *url + "\": " + why);
  for (const auto& e : c.hook_events) {
    bool known = false;
    for (int k = 0; k < event_kind_count; ++k)
      known = known || e == to_string(static_cast<event_kind>(k));
    require(known, "hooks.events",
            "unknown event \"" + e +
                "\" (connect, disconnect, occupied, vacated, join, leave, undelivered)");
  }
  require(c.hook_events.empty() || !c.hook_events_url.empty(), "hooks.events",
          "events go to hooks.events_url; set it too");
  require(c.hook_events_url.empty() || !c.hook_secret.empty(), "hooks.secret",
          "webhooks are signed with hooks.secret (X-Wsnode-Signature); set one");
  require(c.hook_events_max_queue >= 1 && c.hook_events_max_queue <= 10000000,
          "hooks.events_max_queue", "must be 1-10000000");
  require(c.hook_refresh_url.empty() || !c.hook_connect_url.empty(), "hooks.refresh_url",
          "refresh is called for sessions the connect hook gave an expire_at; set "
          "hooks.connect_url too");
  require(c.hook_timeout.count() >= 10 && c.hook_timeout.count() <= 600000, "hooks.timeout_ms",
          "must be 10-600000");
  require(c.hook_max_in_flight >= 1 && c.hook_max_in_flight <= 65536, "hooks.max_in_flight",
          "must be 1-65536");
  require(c.hook_max_answer_bytes >= 64, "hooks.max_answer_bytes", "must be at least 64");
  for (const auto& h : c.hook_forward_headers)
    require(valid_header_name(h), "hooks.forward_headers",
            "\"" + h + "\" is not an HTTP header name");
  for (std::size_t i = 0; i < c.namespaces.size(); ++i) {
    const auto& ns = c.namespaces[i];
    auto where = "namespace[" + std::to_string(i) + "].";
    if (ns.subscribe_hook && c.hook_subscribe_url.empty())
      throw config_error(where + "subscribe_hook", "needs hooks.subscribe_url");
    if (ns.publish_hook && c.hook_publish_url.empty())
      throw config_error(where + "publish_hook", "needs hooks.publish_url");
  }
}

} // namespace wsnode::config_detail
