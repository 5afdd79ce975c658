#include "transport/static_files.hpp"

#include <array>
#include <utility>

namespace wsnode::transport {

namespace fs = std::filesystem;

std::optional<fs::path> static_path(const fs::path& root,
                                    const std::vector<std::string>& segments) {
  if (root.empty())
    return std::nullopt;
  fs::path p = root;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& s = segments[i];
    if (s.empty()) {
      if (i + 1 == segments.size())
        break; // trailing slash: directory index
      return std::nullopt;
    }
    if (s == "." || s == ".." || s.front() == '.' ||
        s.find_first_of(std::string_view{"/\\\0", 3}) != std::string::npos)
      return std::nullopt;
    p /= s;
  }
  std::error_code ec;
  if (fs::is_directory(p, ec))
    p /= "index.html";
  if (!fs::is_regular_file(p, ec))
    return std::nullopt;
  // Symlinks may point anywhere: the canonical file must stay under root.
  auto canon_root = fs::weakly_canonical(root, ec);
  auto canon = fs::weakly_canonical(p, ec);
  if (ec)
    return std::nullopt;
  auto rel = canon.lexically_relative(canon_root);
  if (rel.empty() || *rel.begin() == "..")
    return std::nullopt;
  return p;
}

std::string_view mime_type(std::string_view filename) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 14> types{{
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
  }};
  auto dot = filename.rfind('.');
  if (dot == std::string_view::npos)
    return "application/octet-stream";
  auto ext = filename.substr(dot);
  for (const auto& [e, type] : types) {
    if (e.size() != ext.size())
      continue;
    bool same = true;
    for (std::size_t i = 0; i < e.size() && same; ++i)
      same = e[i] == (ext[i] >= 'A' && ext[i] <= 'Z' ? char(ext[i] - 'A' + 'a') : ext[i]);
    if (same)
      return type;
  }
  return "application/octet-stream";
}

} // namespace wsnode::transport
