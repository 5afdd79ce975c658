// Static files for GET / (the demo page): safe path mapping and MIME types.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::transport {

/// Maps decoded URL path segments to a regular file under `root`.
/// Refuses "." and "..", hidden names (leading '.'), separators and NULs
/// inside a segment, and anything that resolves outside `root`. An empty
/// path or a directory maps to its index.html. Returns nullopt when there is
/// no such file or the path is refused.
std::optional<std::filesystem::path> static_path(const std::filesystem::path& root,
                                                 const std::vector<std::string>& segments);

/// The Content-Type for a file name, by extension.
std::string_view mime_type(std::string_view filename);

} // namespace wsnode::transport
