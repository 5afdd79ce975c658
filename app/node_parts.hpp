// The pieces of a node built from its configuration: transport's options
// and access policy, the sessions' settings, the token keys, the hooks,
// the backbone's options.
#pragma once

#include "actors/session.hpp"
#include "app/config.hpp"
#include "core/metrics.hpp"
#include "transport/backbone_factory.hpp"
#include "transport/server.hpp"

#include <memory>
#include <string>
#include <sys/resource.h>

namespace wsnode {

namespace transport {
class hook_client;
class event_sender;
} // namespace transport

/// Raises the soft open-file limit to the hard one; returns the soft limit.
rlim_t raise_fd_limit();

/// The connection limit: `configured`, or when 0, the open-file limit minus
/// a reserve for listeners, the mesh, HTTP clients and files.
std::size_t max_connections_for(std::size_t configured, rlim_t fd_limit);

/// How clients are identified, for the start-up log.
std::string auth_mode(const config& cfg);

/// The node's token keys; null in dev mode. With `previous` (a reload that
/// changed the keys), tokens `previous` accepts are still accepted for
/// [auth] key_grace_ms.
std::shared_ptr<const protocol::token_verifier>
make_verifier(const config& cfg, const protocol::token_verifier* previous = nullptr);

/// What a reload may change in transport (see transport::access_policy).
transport::access_policy make_access(const config& cfg, rlim_t fd_limit,
                                     std::shared_ptr<const protocol::token_verifier> verifier);

transport::server_options
make_server_options(const config& cfg, rlim_t fd_limit,
                    std::shared_ptr<const protocol::token_verifier> verifier);

/// What every session applies (a reload makes a new one).
actors::session_config
make_session_config(const config& cfg, std::shared_ptr<const actors::namespace_table> namespaces,
                    std::shared_ptr<const protocol::token_verifier> verifier);

/// The application's hooks, when any is configured.
std::shared_ptr<transport::hook_client> make_hooks(const config& cfg, metrics& m);

/// Webhooks, when [hooks] events_url is set.
std::shared_ptr<transport::event_sender> make_events(const config& cfg, metrics& m);

transport::backbone_options make_backbone_options(const config& cfg);

/// This node and its mesh peers (a peer equal to our own bind is ourselves).
std::size_t cluster_size(const config& cfg);

} // namespace wsnode
