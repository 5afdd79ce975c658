// A transparent hash for string-keyed maps: lookups by std::string_view
// need no temporary std::string (the broker, the mesh and the history
// service look topics up by view on every message).
#pragma once

#include <functional>
#include <string_view>

namespace wsnode {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

} // namespace wsnode
