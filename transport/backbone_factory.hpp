// The one place that knows every backbone implementation: the node's
// wiring asks for "the backbone the config names" and gets the interface
// of core/backbone.hpp. A new backbone (NATS) adds its options and a
// branch here; app/node.cpp and the broker stay as they are.
#pragma once

#include "core/backbone.hpp"
#include "core/metrics.hpp"
#include "transport/mesh.hpp"

#include <memory>

namespace wsnode::transport {

struct backbone_options {
  /// Empty `mesh.bind`: a single node (local_backbone).
  mesh_options mesh;
};

/// The backbone `opts` describe; not started yet (backbone::start).
std::shared_ptr<backbone> make_backbone(backbone_options opts, metrics& m);

} // namespace wsnode::transport
