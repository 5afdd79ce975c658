// The pieces of config.cpp that the files reading one part of the config
// share (app/config_backbone.cpp): the reader that remembers which keys it
// knows, and small checks. Private to app/.
#pragma once

#include "app/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace wsnode::config_detail {

// Reads typed values out of a TOML document, remembering which keys it
// knows, so that anything else can be reported as unknown.
class reader {
public:
  explicit reader(const toml::table& root) : root_(root) {}

  template <class T>
  void get(std::string_view section, std::string_view key, T& out) {
    auto name = note(section, key);
    const toml::node* n = root_.at_path(name).node();
    if (n == nullptr)
      return;
    if constexpr (std::is_same_v<T, std::string>) {
      if (!n->is_string())
        throw config_error(name, "expected a string");
      out = n->as_string()->get();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!n->is_boolean())
        throw config_error(name, "expected true or false");
      out = n->as_boolean()->get();
    } else if constexpr (std::is_same_v<T, double>) {
      if (n->is_integer())
        out = static_cast<double>(n->as_integer()->get());
      else if (n->is_floating_point())
        out = n->as_floating_point()->get();
      else
        throw config_error(name, "expected a number");
    } else {
      if (!n->is_integer())
        throw config_error(name, "expected an integer");
      auto v = n->as_integer()->get();
      if (v < 0)
        throw config_error(name, "must not be negative");
      out = static_cast<T>(v);
    }
  }

  void millis(std::string_view section, std::string_view key, std::chrono::milliseconds& out) {
    std::int64_t v = out.count();
    get(section, key, v);
    out = std::chrono::milliseconds{v};
  }

  void strings(std::string_view section, std::string_view key, std::vector<std::string>& out) {
    auto name = note(section, key);
    const toml::node* n = root_.at_path(name).node();
    if (n == nullptr)
      return;
    const toml::array* arr = n->as_array();
    if (arr == nullptr)
      throw config_error(name, "expected a list of strings");
    out.clear();
    for (const auto& e : *arr) {
      if (!e.is_string())
        throw config_error(name, "expected a list of strings");
      out.push_back(e.as_string()->get());
    }
  }

  /// Throws for the first section or key that was never asked for.
  void check_unknown() const {
    for (const auto& [section, node] : root_) {
      std::string s{section.str()};
      if (s == "namespace")
        continue; // an array of tables, checked by read_namespaces
      if (!sections_.contains(s))
        throw config_error(s, "unknown section");
      const toml::table* t = node.as_table();
      if (t == nullptr)
        throw config_error(s, "expected a table ([" + s + "])");
      for (const auto& [key, value] : *t) {
        std::string k = s + "." + std::string{key.str()};
        if (!keys_.contains(k))
          throw config_error(k, "unknown key");
      }
    }
  }

private:
  std::string note(std::string_view section, std::string_view key) {
    sections_.emplace(section);
    std::string name = std::string{section} + "." + std::string{key};
    keys_.insert(name);
    return name;
  }

  const toml::table& root_;
  std::set<std::string, std::less<>> sections_;
  std::set<std::string, std::less<>> keys_;
};

inline void require(bool ok, const char* key, const std::string& msg) {
  if (!ok)
    throw config_error(key, msg);
}

inline bool valid_node_id(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

// "tcp://IP:PORT" (bind) or "tcp://HOST:PORT" (peers).
inline void check_tcp_endpoint(std::string_view s, const std::string& key) {
  constexpr std::string_view scheme = "tcp://";
  if (!s.starts_with(scheme))
    throw config_error(key, "expected tcp://HOST:PORT, got \"" + std::string{s} + "\"");
  std::string host;
  std::uint16_t port = 0;
  split_host_port(s.substr(scheme.size()), key, host, port);
  if (port == 0)
    throw config_error(key, "port must be 1-65535 in \"" + std::string{s} + "\"");
}

/// Reads [backbone], [mesh] and [nats] (app/config_backbone.cpp).
void read_backbone(reader& r, config& c);
/// Checks them once everything is read; paths resolve against `base_dir`.
void check_backbone(config& c, const std::filesystem::path& base_dir);

/// [hooks] (app/config_hooks.cpp).
void read_hooks(reader& r, config& c);
/// Checks [hooks] against itself and the namespaces' hook switches.
void check_hooks(const config& c);

} // namespace wsnode::config_detail
