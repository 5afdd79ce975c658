#include "transport/backbone_factory.hpp"

namespace wsnode::transport {

std::shared_ptr<backbone> make_backbone(backbone_options opts, metrics& m) {
  if (opts.mesh.bind.empty())
    return std::make_shared<local_backbone>();
  return std::make_shared<zmq_mesh>(std::move(opts.mesh), m);
}

} // namespace wsnode::transport
