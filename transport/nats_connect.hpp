// The options of the NATS backbone's connection (nats.c): servers in the
// configured order, credentials, reconnecting for ever, pings that leave a
// silent server, one delivery thread for every subscription.
#pragma once

#include "transport/nats_backbone.hpp"

#include <nats/nats.h>

namespace wsnode::transport {

struct nats_callbacks {
  natsConnectionHandler disconnected = nullptr;
  natsConnectionHandler reconnected = nullptr; ///< also the first connect, when it came late
  natsErrHandler error = nullptr;
  natsConnectionHandler closed = nullptr; ///< the last callback nats.c makes
  void* closure = nullptr;
};

/// Throws std::runtime_error naming what nats.c refused (natsOptions_Destroy it).
natsOptions* make_nats_options(const nats_options& opts, const nats_callbacks& cb);

/// Throws std::runtime_error "nats: WHAT: STATUS" unless `s` is NATS_OK.
void check(natsStatus s, const char* what);

} // namespace wsnode::transport
