// The one place that knows every backbone implementation: the node's
// wiring asks for "the backbone the config names" and gets the interface
// of core/backbone.hpp: the ZeroMQ mesh, NATS, or a single node's.
#pragma once

#include "core/backbone.hpp"
#include "core/metrics.hpp"
#include "transport/mesh.hpp"
#include "transport/nats_backbone.hpp"

#include <memory>

namespace wsnode::transport {

struct backbone_options {
  enum class kind : std::uint8_t { mesh, nats } kind = kind::mesh;
  /// Empty `mesh.bind`: a single node (local_backbone).
  mesh_options mesh;
  nats_options nats; ///< with kind::nats
};

/// The backbone `opts` describe; not started yet (backbone::start).
std::shared_ptr<backbone> make_backbone(backbone_options opts, metrics& m);

/// The engine keeping channel history on `bb`'s side (JetStream on NATS),
/// or null when history is the mesh's own replication.
std::shared_ptr<history_engine> history_engine_of(const std::shared_ptr<backbone>& bb);

} // namespace wsnode::transport
