// The HTTP/1.1 client of the application's hooks (Boost.Beast): one thread
// with its own io_context, keep-alive connections per backend address, at
// most max_in_flight calls open and the rest waiting in a FIFO, every call
// answered within the timeout of being asked (docs/operations.md "Hooks").
#pragma once

#include "core/hooks.hpp"
#include "core/metrics.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace wsnode::transport {

struct hook_options {
  std::array<std::string, protocol::hook_kind_count> urls; ///< by hook_kind; "" = off
  std::chrono::milliseconds timeout{2000};
  std::size_t max_in_flight = 256;
  std::string secret; ///< sent as X-Wsnode-Secret when set
  std::size_t max_answer_bytes = 1 << 20;
};

/// Where a hook's calls go.
struct hook_url {
  std::string host; ///< to resolve
  std::string port;
  std::string host_header;
  std::string target; ///< path and query
};

/// `url` split for calls; nullopt with `why` when it cannot be a hook's URL:
/// only http://HOST[:PORT]/PATH, as the backend runs beside the node.
std::optional<hook_url> parse_hook_url(std::string_view url, std::string& why);

/// Returns why `url` cannot be a hook's URL ("" when it can).
std::string check_hook_url(std::string_view url);

class hook_client final : public hook_port {
public:
  /// Starts the client's thread. `m` must outlive it. Throws
  /// std::invalid_argument for a URL check_hook_url refuses.
  hook_client(hook_options opts, hook_metrics& m);
  /// Answers every waiting and open call with a failure, then stops.
  ~hook_client() override;
  hook_client(const hook_client&) = delete;
  hook_client& operator=(const hook_client&) = delete;

  bool has(hook_kind k) const noexcept override;
  void call(hook_kind k, std::string body, hook_done done) override;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace wsnode::transport
