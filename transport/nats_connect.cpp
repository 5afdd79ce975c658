#include "transport/nats_connect.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

namespace wsnode::transport {

void check(natsStatus s, const char* what) {
  if (s != NATS_OK)
    throw std::runtime_error(fmt::format("nats: {}: {}", what, natsStatus_GetText(s)));
}

natsOptions* make_nats_options(const nats_options& opts, const nats_callbacks& cb) {
  natsOptions* o = nullptr;
  check(natsOptions_Create(&o), "options");
  std::unique_ptr<natsOptions, decltype(&natsOptions_Destroy)> guard{o, natsOptions_Destroy};
  std::vector<const char*> urls;
  for (const auto& s : opts.servers)
    urls.push_back(s.c_str());
  check(natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size())), "servers");
  check(natsOptions_SetNoRandomize(o, true), "servers");
  check(natsOptions_SetName(o, ("wsnode " + opts.node_id).c_str()), "name");
  if (!opts.user.empty())
    check(natsOptions_SetUserInfo(o, opts.user.c_str(), opts.password.c_str()), "user");
  if (!opts.token.empty())
    check(natsOptions_SetToken(o, opts.token.c_str()), "token");
  if (!opts.creds_file.empty())
    check(natsOptions_SetUserCredentialsFromFiles(o, opts.creds_file.c_str(), nullptr),
          "creds_file");
  check(natsOptions_SetNoEcho(o, true), "no echo"); // the broker delivers its own locally
  // one delivery thread for every subscription, not one each
  check(natsOptions_UseGlobalMessageDelivery(o, true), "delivery");
  check(natsOptions_SetTimeout(o, 2000), "timeout");
  check(natsOptions_SetMaxReconnect(o, -1), "reconnect");
  check(natsOptions_SetReconnectWait(o, 100), "reconnect");
  check(natsOptions_SetReconnectJitter(o, 100, 1000), "reconnect");
  check(natsOptions_SetReconnectBufSize(o, opts.reconnect_buffer), "reconnect buffer");
  // a silent server (no RST: a partition) is left after ~3 missed pings
  auto ping = std::max<std::int64_t>(1000, 2 * opts.heartbeat.count());
  check(natsOptions_SetPingInterval(o, ping), "ping");
  check(natsOptions_SetMaxPingsOut(o, 3), "ping");
  check(natsOptions_SetDisconnectedCB(o, cb.disconnected, cb.closure), "callbacks");
  check(natsOptions_SetReconnectedCB(o, cb.reconnected, cb.closure), "callbacks");
  check(natsOptions_SetErrorHandler(o, cb.error, cb.closure), "callbacks");
  check(natsOptions_SetClosedCB(o, cb.closed, cb.closure), "callbacks");
  check(natsOptions_SetRetryOnFailedConnect(o, true, cb.reconnected, cb.closure), "retry");
  return guard.release();
}

} // namespace wsnode::transport
