#include "actors/namespaces.hpp"

#include "protocol/names.hpp"

#include <algorithm>

namespace wsnode::actors {

namespace_table::namespace_table(std::vector<namespace_options> list) : list_(std::move(list)) {
  any_history_ = std::any_of(list_.begin(), list_.end(),
                             [](const namespace_options& n) { return n.has_history(); });
  any_presence_ = std::any_of(list_.begin(), list_.end(),
                              [](const namespace_options& n) { return n.presence; });
}

const namespace_options& namespace_table::of_channel(std::string_view ch) const noexcept {
  auto ns = protocol::channel_namespace(ch);
  for (const auto& n : list_)
    if (n.name == ns)
      return n;
  return defaults_;
}

} // namespace wsnode::actors
