#include "actors/history/wire.hpp"

namespace wsnode::actors::wire {

namespace json = boost::json;

namespace {

std::int64_t age_ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::chrono::steady_clock::duration from_ms(std::uint64_t ms) {
  return std::chrono::milliseconds{static_cast<std::int64_t>(ms)};
}

std::uint64_t as_u64(const json::value& v) {
  if (v.is_uint64())
    return v.as_uint64();
  if (v.is_int64() && v.as_int64() >= 0)
    return static_cast<std::uint64_t>(v.as_int64());
  return 0;
}

} // namespace

std::string payload(std::string_view ch, const json::object& msg) {
  std::string out{ch};
  out += '\n';
  out += json::serialize(msg);
  return out;
}

std::optional<std::pair<std::string, json::object>> parse(std::string_view p) {
  auto nl = p.find('\n');
  if (nl == std::string_view::npos || nl == 0)
    return std::nullopt;
  json::error_code ec;
  auto v = json::parse(p.substr(nl + 1), ec);
  if (ec || !v.is_object())
    return std::nullopt;
  return std::pair{std::string{p.substr(0, nl)}, std::move(v.as_object())};
}

std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_string())
    return {};
  return std::string{v->as_string()};
}

std::uint64_t num(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v == nullptr ? 0 : as_u64(*v);
}

bool flag(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->as_bool();
}

json::object encode_copy(const copy& c) {
  json::array entries;
  entries.reserve(c.entries.size());
  for (const auto& e : c.entries)
    entries.push_back(json::array{e.off, json::string_view{*e.frame}, age_ms(e.age)});
  json::array keys;
  keys.reserve(c.keys.size());
  for (const auto& k : c.keys)
    keys.push_back(json::array{json::string_view{k.key}, k.off, age_ms(k.age)});
  return {{"ep", c.ep},         {"cterm", c.cterm},        {"top", c.top},
          {"commit", c.commit}, {"e", std::move(entries)}, {"k", std::move(keys)}};
}

copy decode_copy(const json::object& o) {
  copy c;
  c.ep = str(o, "ep");
  c.cterm = num(o, "cterm");
  c.top = num(o, "top");
  c.commit = num(o, "commit");
  if (auto* e = o.if_contains("e"); e && e->is_array())
    for (const auto& row : e->as_array()) {
      if (!row.is_array() || row.as_array().size() != 3 || !row.as_array()[1].is_string())
        continue;
      const auto& a = row.as_array();
      c.entries.push_back(
          {as_u64(a[0]), make_frame(std::string{a[1].as_string()}), from_ms(as_u64(a[2]))});
    }
  if (auto* k = o.if_contains("k"); k && k->is_array())
    for (const auto& row : k->as_array()) {
      if (!row.is_array() || row.as_array().size() != 3 || !row.as_array()[0].is_string())
        continue;
      const auto& a = row.as_array();
      c.keys.push_back({std::string{a[0].as_string()}, as_u64(a[1]), from_ms(as_u64(a[2]))});
    }
  // a copy must be contiguous and end at top; anything else is dropped
  std::uint64_t expect = c.entries.empty() ? 0 : c.entries.front().off;
  for (const auto& e : c.entries)
    if (e.off != expect++) {
      c.entries.clear();
      break;
    }
  if (!c.entries.empty() && c.entries.back().off != c.top)
    c.entries.clear();
  return c;
}

json::object encode_append(std::uint64_t term, std::uint64_t off, std::string_view frame,
                           std::string_view key, std::uint64_t commit) {
  json::object o{{"t", "app"}, {"term", term}, {"off", off}, {"f", frame}, {"commit", commit}};
  if (!key.empty())
    o["k"] = key;
  return o;
}

json::object encode_read(const read_request& r) {
  json::object o{{"t", "read"},
                 {"kind", r.kind == read_request::purpose::subscribe ? "sub" : "history"}};
  if (r.since_ep) {
    o["since_ep"] = *r.since_ep;
    o["since_off"] = r.since_off;
  }
  if (r.limit)
    o["limit"] = *r.limit;
  return o;
}

read_request decode_read(const json::object& o) {
  read_request r;
  r.kind = str(o, "kind") == "history" ? read_request::purpose::history
                                       : read_request::purpose::subscribe;
  if (o.contains("since_ep")) {
    r.since_ep = str(o, "since_ep");
    r.since_off = num(o, "since_off");
  }
  if (o.contains("limit"))
    r.limit = static_cast<std::size_t>(num(o, "limit"));
  return r;
}

json::object encode_read_outcome(const read_outcome& r) {
  json::array frames;
  for (const auto& f : r.frames)
    frames.push_back(json::string_view{*f});
  json::object o{
      {"ok", r.ok}, {"error", r.error}, {"ep", r.ep}, {"off", r.off}, {"f", std::move(frames)}};
  if (r.recovered)
    o["recovered"] = *r.recovered;
  return o;
}

read_outcome decode_read_outcome(const json::object& o) {
  read_outcome r;
  r.ok = flag(o, "ok");
  r.error = str(o, "error");
  r.ep = str(o, "ep");
  r.off = num(o, "off");
  if (auto* v = o.if_contains("recovered"); v && v->is_bool())
    r.recovered = v->as_bool();
  if (auto* f = o.if_contains("f"); f && f->is_array())
    for (const auto& x : f->as_array())
      if (x.is_string())
        r.frames.push_back(make_frame(std::string{x.as_string()}));
  return r;
}

} // namespace wsnode::actors::wire
