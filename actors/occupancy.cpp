#include "actors/occupancy.hpp"

#include "actors/rank_nodes.hpp"

#include <algorithm>

namespace wsnode::actors {

// The payloads between tables: one kind byte, the name, and for an
// undelivered check '\n' and the event's fields.
//   '+' name   a delta: the sender holds name now (announced)
//   '-' name   a delta: the sender holds it no more
//   '=' name   a sync: the sender holds name (an owner change; not announced)
//   '?' name '\n' fields   an undelivered check of "u:<user>"

occupancy_table::occupancy_table(std::string self, occupancy_hooks hooks)
  : self_(std::move(self)), hooks_(std::move(hooks)) {}

std::string occupancy_table::owner(std::string_view name) const {
  std::vector<std::string> nodes = peers_;
  nodes.push_back(self_);
  return rank_nodes(name, std::move(nodes)).front();
}

void occupancy_table::tell(const std::string& node, char kind, std::string_view name,
                           std::string_view extra) {
  std::string payload;
  payload.reserve(2 + name.size() + extra.size());
  payload += kind;
  payload += name;
  if (!extra.empty()) {
    payload += '\n';
    payload += extra;
  }
  hooks_.send(node, std::move(payload));
}

void occupancy_table::apply(const std::string& node, const std::string& name, bool held,
                            bool announce) {
  auto it = holders_.find(name);
  if (held) {
    if (it == holders_.end()) {
      holders_[name].insert(node);
      if (announce)
        hooks_.changed(name, true);
      return;
    }
    it->second.insert(node);
    return;
  }
  if (it == holders_.end() || it->second.erase(node) == 0 || !it->second.empty())
    return;
  holders_.erase(it);
  hooks_.changed(name, false);
}

void occupancy_table::local(const std::string& name, bool held) {
  if (held)
    local_.insert(name);
  else
    local_.erase(name);
  auto o = owner(name);
  if (o == self_)
    return apply(self_, name, held, true);
  tell(o, held ? '+' : '-', name);
}

void occupancy_table::check_undelivered(const std::string& user, std::string fields) {
  std::string name = "u:" + user;
  auto o = owner(name);
  if (o != self_)
    return tell(o, '?', name, fields);
  if (holders_.find(name) == holders_.end())
    hooks_.undelivered(std::move(fields));
}

bool occupancy_table::on_message(const std::string& from, std::string_view payload) {
  if (payload.size() < 2)
    return false;
  char kind = payload[0];
  auto rest = payload.substr(1);
  if (kind == '?') {
    auto nl = rest.find('\n');
    if (nl == std::string_view::npos)
      return false;
    auto name = rest.substr(0, nl);
    if (!name.starts_with("u:"))
      return false;
    if (holders_.find(name) == holders_.end())
      hooks_.undelivered(std::string{rest.substr(nl + 1)});
    return true;
  }
  if (rest.find('\n') != std::string_view::npos)
    return false;
  std::string name{rest};
  switch (kind) {
  case '+':
    apply(from, name, true, true);
    return true;
  case '-':
    apply(from, name, false, true);
    return true;
  case '=':
    apply(from, name, true, false);
    return true;
  default:
    return false;
  }
}

// A gone node's subscribers are gone: what only it held is vacated.
void occupancy_table::drop_node(const std::string& node) {
  std::vector<std::string> emptied;
  for (auto it = holders_.begin(); it != holders_.end();) {
    if (it->second.erase(node) != 0 && it->second.empty()) {
      emptied.push_back(it->first);
      it = holders_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& name : emptied)
    hooks_.changed(name, false);
}

// Tells `o`, the owner of `name` now, that this node holds it.
void occupancy_table::sync(const std::string& o, const std::string& name) {
  if (o == self_)
    apply(self_, name, true, false);
  else
    tell(o, '=', name);
}

void occupancy_table::on_view(std::vector<std::string> live) {
  std::sort(live.begin(), live.end());
  live.erase(std::unique(live.begin(), live.end()), live.end());
  std::erase(live, self_);
  std::vector<std::string> gone;
  std::set_difference(peers_.begin(), peers_.end(), live.begin(), live.end(),
                      std::back_inserter(gone));
  std::vector<std::string> owners_before;
  owners_before.reserve(local_.size());
  for (const auto& name : local_)
    owners_before.push_back(owner(name));
  peers_ = std::move(live);
  for (const auto& node : gone)
    drop_node(node);
  // names this node owned and owns no more: their new owner hears from
  // every holder (syncs), so what it kept goes without an event
  std::erase_if(holders_, [&](const auto& e) { return owner(e.first) != self_; });
  std::size_t i = 0;
  for (const auto& name : local_) {
    auto o = owner(name);
    if (o != owners_before[i++])
      sync(o, name);
  }
}

void occupancy_table::on_restart(const std::string& node) {
  drop_node(node);
  for (const auto& name : local_) // it lost what it owned
    if (auto o = owner(name); o == node)
      sync(o, name);
}

} // namespace wsnode::actors
