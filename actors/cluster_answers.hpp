// The server API's cluster-wide calls (core/ports.hpp `cluster_api`) as
// answers: what each node answers for its own sessions and channels (its
// part), and how the node that took the HTTP call merges the parts into
// the answer (docs/protocol.md "Server API"). Pure: no actors, no I/O.
#pragma once

#include "core/ports.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsnode::actors {

/// The call's name on the backbone ("disconnect", ...), and back.
std::string_view to_string(cluster_api c) noexcept;
std::optional<cluster_api> cluster_api_from(std::string_view s) noexcept;

// ---- one node's part (a JSON object)

/// disconnect, subscribe, unsubscribe: the sessions the call reached here.
std::string sessions_part(std::uint64_t n);
/// online: sessions here per user, in the order asked.
std::string online_part(const std::vector<std::string>& users,
                        const std::vector<std::uint64_t>& counts);
/// channels: this node's first channels of the page (sorted), and whether
/// more follow here.
std::string channels_part(const std::vector<std::pair<std::string, std::uint64_t>>& page,
                          bool more);
struct node_info {
  std::string node;
  std::int64_t connections = 0;
  std::uint64_t sessions = 0;
  std::uint64_t channels = 0;
  std::uint64_t uptime_s = 0;
  std::string version;
};
/// info: this node's numbers.
std::string info_part(const node_info& i);

// ---- the merge

/// One node's part, as received.
struct node_part {
  std::string node;
  std::string json;
};

/// The HTTP answer of call `c` from the parts of the nodes that answered;
/// `limit` is the channels page's; `missing` names the live nodes that did
/// not answer in time (listed in the answer). A part that is not what its
/// call answers counts as missing.
std::string merge_parts(cluster_api c, const std::vector<node_part>& parts, std::size_t limit,
                        std::vector<std::string> missing);

} // namespace wsnode::actors
