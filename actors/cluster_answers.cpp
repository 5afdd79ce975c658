#include "actors/cluster_answers.hpp"

#include "protocol/json_scan.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <map>

namespace wsnode::actors {

namespace {

constexpr std::array<std::string_view, cluster_api_count> call_names{
    "disconnect", "subscribe", "unsubscribe", "online", "channels", "info"};

namespace json = boost::json;

using protocol::json::append_string;

std::optional<std::uint64_t> count_of(const json::value* v) {
  if (v == nullptr)
    return std::nullopt;
  if (auto* u = v->if_uint64())
    return *u;
  if (auto* i = v->if_int64(); i != nullptr && *i >= 0)
    return static_cast<std::uint64_t>(*i);
  return std::nullopt;
}

const json::object* object_of(const node_part& p, json::value& holder) {
  boost::system::error_code ec;
  holder = json::parse(p.json, ec);
  return ec ? nullptr : holder.if_object();
}

// Appends ,"missing":[...] (sorted) when some node did not answer.
void append_missing(std::string& out, std::vector<std::string> missing) {
  if (missing.empty())
    return;
  std::sort(missing.begin(), missing.end());
  out += ",\"missing\":[";
  for (std::size_t i = 0; i < missing.size(); ++i) {
    if (i > 0)
      out += ',';
    append_string(out, missing[i]);
  }
  out += ']';
}

// Appends ,"nodes":N and the missing ones.
void append_nodes(std::string& out, std::size_t answered, std::vector<std::string> missing) {
  out += ",\"nodes\":" + std::to_string(answered);
  append_missing(out, std::move(missing));
}

// Calls `take(object, member)` for each part whose object has `key`; a
// part without it, or whose member `take` refuses (returns false), is
// missing. Returns how many parts answered.
template <class Take>
std::size_t read_parts(const std::vector<node_part>& parts, std::string_view key,
                       std::vector<std::string>& missing, Take take) {
  std::size_t answered = 0;
  for (const auto& p : parts) {
    json::value v;
    const auto* o = object_of(p, v);
    const auto* member = o ? o->if_contains(key) : nullptr;
    if (member == nullptr || !take(*o, *member)) {
      missing.push_back(p.node);
      continue;
    }
    ++answered;
  }
  return answered;
}

std::string merge_sessions(const std::vector<node_part>& parts, std::vector<std::string> missing) {
  std::uint64_t total = 0;
  auto answered = read_parts(parts, "sessions", missing, [&](const auto&, const json::value& m) {
    auto n = count_of(&m);
    total += n.value_or(0);
    return n.has_value();
  });
  std::string out = "{\"ok\":true,\"sessions\":" + std::to_string(total);
  append_nodes(out, answered, std::move(missing));
  return out + "}";
}

std::string merge_online(const std::vector<node_part>& parts, std::vector<std::string> missing) {
  std::vector<std::pair<std::string, std::uint64_t>> totals; // in the order of the first part
  std::map<std::string, std::size_t, std::less<>> index;
  auto answered = read_parts(parts, "online", missing, [&](const auto&, const json::value& m) {
    const auto* users = m.if_object();
    if (users == nullptr)
      return false;
    for (const auto& [user, n] : *users) {
      std::string name{user};
      auto [it, added] = index.try_emplace(name, totals.size());
      if (added)
        totals.emplace_back(name, 0);
      totals[it->second].second += count_of(&n).value_or(0);
    }
    return true;
  });
  std::string out = "{\"online\":{";
  for (std::size_t i = 0; i < totals.size(); ++i) {
    if (i > 0)
      out += ',';
    append_string(out, totals[i].first);
    out += ':' + std::to_string(totals[i].second);
  }
  out += '}';
  append_nodes(out, answered, std::move(missing));
  return out + "}";
}

// Each node sends its first `limit` channels after the cursor, sorted; the
// first `limit` of their union have every node's count (a channel past a
// node's page sorts after `limit` others of that node).
std::string merge_channels(const std::vector<node_part>& parts, std::size_t limit,
                           std::vector<std::string> missing) {
  std::map<std::string, std::uint64_t, std::less<>> totals;
  bool more = false;
  auto answered =
      read_parts(parts, "channels", missing, [&](const json::object& o, const json::value& m) {
        const auto* arr = m.if_array();
        if (arr == nullptr)
          return false;
        if (const auto* x = o.if_contains("more"); x != nullptr && x->is_bool() && x->get_bool())
          more = true;
        for (const auto& e : *arr) {
          const auto* pair = e.if_array();
          if (pair == nullptr || pair->size() != 2 || !(*pair)[0].is_string())
            continue;
          totals[std::string{(*pair)[0].get_string()}] += count_of(&(*pair)[1]).value_or(0);
        }
        return true;
      });
  if (totals.size() > limit)
    more = true;
  std::string out = "{\"channels\":[";
  std::string last;
  std::size_t n = 0;
  for (const auto& [ch, count] : totals) {
    if (n == limit)
      break;
    if (n++ > 0)
      out += ',';
    out += "{\"ch\":";
    append_string(out, ch);
    out += ",\"subscribers\":" + std::to_string(count) + "}";
    last = ch;
  }
  out += ']';
  if (more && !last.empty()) {
    out += ",\"cursor\":";
    append_string(out, last);
  }
  append_nodes(out, answered, std::move(missing));
  return out + "}";
}

std::string merge_info(const std::vector<node_part>& parts, std::vector<std::string> missing) {
  std::vector<std::pair<std::string, std::string>> nodes; // (id, its object as received)
  for (const auto& p : parts) {
    json::value v;
    auto* o = object_of(p, v);
    if (o == nullptr || o->if_contains("node") == nullptr) {
      missing.push_back(p.node);
      continue;
    }
    nodes.emplace_back(p.node, json::serialize(*o));
  }
  std::sort(nodes.begin(), nodes.end());
  std::string out = "{\"nodes\":[";
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i > 0)
      out += ',';
    out += nodes[i].second;
  }
  out += ']';
  append_missing(out, std::move(missing));
  return out + "}";
}

} // namespace

std::string_view to_string(cluster_api c) noexcept {
  return call_names[static_cast<std::size_t>(c)];
}

std::optional<cluster_api> cluster_api_from(std::string_view s) noexcept {
  for (std::size_t i = 0; i < call_names.size(); ++i)
    if (call_names[i] == s)
      return static_cast<cluster_api>(i);
  return std::nullopt;
}

std::string sessions_part(std::uint64_t n) {
  return "{\"sessions\":" + std::to_string(n) + "}";
}

std::string online_part(const std::vector<std::string>& users,
                        const std::vector<std::uint64_t>& counts) {
  std::string out = "{\"online\":{";
  for (std::size_t i = 0; i < users.size(); ++i) {
    if (i > 0)
      out += ',';
    append_string(out, users[i]);
    out += ':' + std::to_string(i < counts.size() ? counts[i] : 0);
  }
  return out + "}}";
}

std::string channels_part(const std::vector<std::pair<std::string, std::uint64_t>>& page,
                          bool more) {
  std::string out = "{\"channels\":[";
  for (std::size_t i = 0; i < page.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '[';
    append_string(out, page[i].first);
    out += ',' + std::to_string(page[i].second) + ']';
  }
  out += "],\"more\":";
  out += more ? "true" : "false";
  return out + "}";
}

std::string info_part(const node_info& i) {
  std::string out = "{\"node\":";
  append_string(out, i.node);
  out += ",\"connections\":" + std::to_string(i.connections) +
         ",\"sessions\":" + std::to_string(i.sessions) +
         ",\"channels\":" + std::to_string(i.channels) +
         ",\"uptime_s\":" + std::to_string(i.uptime_s) + ",\"version\":";
  append_string(out, i.version);
  return out + "}";
}

std::string merge_parts(cluster_api c, const std::vector<node_part>& parts, std::size_t limit,
                        std::vector<std::string> missing) {
  switch (c) {
  case cluster_api::disconnect:
  case cluster_api::subscribe:
  case cluster_api::unsubscribe:
    return merge_sessions(parts, std::move(missing));
  case cluster_api::online:
    return merge_online(parts, std::move(missing));
  case cluster_api::channels:
    return merge_channels(parts, limit, std::move(missing));
  case cluster_api::info:
    break;
  }
  return merge_info(parts, std::move(missing));
}

} // namespace wsnode::actors
