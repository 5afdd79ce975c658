#include "transport/backbone_factory.hpp"

namespace wsnode::transport {

std::shared_ptr<backbone> make_backbone(backbone_options opts, metrics& m) {
  if (opts.kind == backbone_options::kind::nats)
    return std::make_shared<nats_backbone>(std::move(opts.nats), m);
  if (opts.mesh.bind.empty())
    return std::make_shared<local_backbone>();
  m.backbone_kind = "mesh";
  return std::make_shared<zmq_mesh>(std::move(opts.mesh), m);
}

std::shared_ptr<history_engine> history_engine_of(const std::shared_ptr<backbone>& bb) {
  auto nats = std::dynamic_pointer_cast<nats_backbone>(bb);
  return nats ? nats->history() : nullptr;
}

} // namespace wsnode::transport
