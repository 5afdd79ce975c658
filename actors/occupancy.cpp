#include "actors/occupancy.hpp"

#include "actors/rank_nodes.hpp"

#include <algorithm>

namespace wsnode::actors {

// The payloads between tables: one kind byte, the name, and for an
// undelivered check '\n' and the event's fields.
//   '+' name   a delta: the sender holds name now
//   '-' name   a delta: the sender holds it no more
//   '=' name   a sync: the sender holds name (a keeper changed: no event)
//   '?' name '\n' fields   an undelivered check of "u:<user>"
//   '#' COUNT ' ' HASH      a digest of what the sender holds of the names
//                           the receiver keeps (HASH: xor of name_hash)
//   '!' '-'                 the receiver's list, please (digests differed)
//   '[' '-', then '*' name for each, then ']' '-'   that list

namespace {

std::uint64_t name_hash(std::string_view name) {
  return rank_detail::fnv1a(name, {});
}

} // namespace

occupancy_table::occupancy_table(std::string self, occupancy_hooks hooks,
                                 clock::duration digest_interval)
  : self_(std::move(self)), hooks_(std::move(hooks)), digest_interval_(digest_interval) {}

std::vector<std::string> occupancy_table::keepers(std::string_view name) const {
  std::vector<std::string> nodes = peers_;
  nodes.push_back(self_);
  auto ranked = rank_nodes(name, std::move(nodes));
  ranked.resize(std::min<std::size_t>(ranked.size(), 2));
  return ranked;
}

bool occupancy_table::owns(std::string_view name) const {
  return keepers(name).front() == self_;
}

bool occupancy_table::keeps(std::string_view name) const {
  auto k = keepers(name);
  return std::find(k.begin(), k.end(), self_) != k.end();
}

void occupancy_table::tell(const std::string& node, char kind, std::string_view name,
                           std::string_view extra) {
  std::string payload;
  payload.reserve(2 + name.size() + extra.size());
  payload += kind;
  payload += name;
  if (kind == '?') {
    payload += '\n';
    payload += extra;
  }
  hooks_.send(node, std::move(payload));
}

// Both keepers track the holders; only the owner tells the application.
void occupancy_table::apply(const std::string& node, const std::string& name, bool held,
                            bool announce) {
  auto it = holders_.find(name);
  if (held) {
    if (it == holders_.end()) {
      holders_[name].insert(node);
      if (announce && owns(name))
        hooks_.changed(name, true);
      return;
    }
    it->second.insert(node);
    return;
  }
  if (it == holders_.end() || it->second.erase(node) == 0 || !it->second.empty())
    return;
  holders_.erase(it);
  if (owns(name))
    hooks_.changed(name, false);
}

void occupancy_table::local(const std::string& name, bool held) {
  if (held)
    local_.insert(name);
  else
    local_.erase(name);
  for (const auto& k : keepers(name)) {
    if (k == self_)
      apply(self_, name, held, true);
    else
      tell(k, held ? '+' : '-', name);
  }
}

void occupancy_table::check_undelivered(const std::string& user, std::string fields) {
  std::string name = "u:" + user;
  auto o = keepers(name).front();
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
  switch (kind) {
  case '#':
    on_digest(from, rest);
    return true;
  case '!':
    send_list(from);
    return true;
  case '[':
    repairing_[from].clear();
    return true;
  case ']':
    end_repair(from);
    return true;
  case '*':
    if (auto it = repairing_.find(from); it != repairing_.end()) {
      it->second.emplace(rest);
      apply(from, std::string{rest}, true, true); // a lost delta's occupied
      return true;
    }
    return false;
  default:
    break;
  }
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

// Each keeper gets the digest of what this node holds of the names it keeps.
void occupancy_table::tick(clock::time_point now) {
  if (peers_.empty() || now - last_digest_ < digest_interval_)
    return;
  last_digest_ = now;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> digests; // keeper -> count, hash
  for (const auto& peer : peers_)
    digests[peer] = {0, 0};
  for (const auto& name : local_)
    for (const auto& k : keepers(name))
      if (k != self_) {
        auto& d = digests[k];
        ++d.first;
        d.second ^= name_hash(name);
      }
  for (const auto& [k, d] : digests)
    tell(k, '#', std::to_string(d.first) + " " + std::to_string(d.second));
}

// Compares `from`'s digest with what this node keeps of it; two differing
// in a row (one may cross a delta or a view change) ask for its list.
void occupancy_table::on_digest(const std::string& from, std::string_view digest) {
  std::uint64_t count = 0;
  std::uint64_t hash = 0;
  for (const auto& [name, nodes] : holders_)
    if (nodes.count(from) != 0) {
      ++count;
      hash ^= name_hash(name);
    }
  if (digest == std::to_string(count) + " " + std::to_string(hash)) {
    mismatches_.erase(from);
    return;
  }
  if (++mismatches_[from] < 2)
    return;
  mismatches_.erase(from);
  if (hooks_.repair)
    hooks_.repair();
  tell(from, '!', "-");
}

// What this node holds of the names `keeper` keeps, as one list.
void occupancy_table::send_list(const std::string& keeper) {
  tell(keeper, '[', "-");
  for (const auto& name : local_) {
    auto k = keepers(name);
    if (std::find(k.begin(), k.end(), keeper) != k.end())
      tell(keeper, '*', name);
  }
  tell(keeper, ']', "-");
}

// `from`'s list is complete: what it no longer holds goes (a lost delta's
// vacated).
void occupancy_table::end_repair(const std::string& from) {
  auto it = repairing_.find(from);
  if (it == repairing_.end())
    return;
  auto listed = std::move(it->second);
  repairing_.erase(it);
  std::vector<std::string> gone;
  for (const auto& [name, nodes] : holders_)
    if (nodes.count(from) != 0 && listed.count(name) == 0)
      gone.push_back(name);
  for (const auto& name : gone)
    apply(from, name, false, true);
}

// A gone node's subscribers are gone: what only it held is vacated, told
// by the owner (a backup only forgets), or by the backup when the owner is
// the node that restarted (it lost what it knew).
void occupancy_table::drop_node(const std::string& node, bool restarted) {
  std::vector<std::string> emptied;
  for (auto it = holders_.begin(); it != holders_.end();) {
    if (it->second.erase(node) != 0 && it->second.empty()) {
      emptied.push_back(it->first);
      it = holders_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& name : emptied) {
    auto k = keepers(name);
    if (k.front() == self_ || (restarted && k.front() == node))
      hooks_.changed(name, false);
  }
}

// Tells keeper `k` of `name` that this node holds it.
void occupancy_table::sync(const std::string& k, const std::string& name) {
  if (k == self_)
    apply(self_, name, true, false);
  else
    tell(k, '=', name);
}

void occupancy_table::on_view(std::vector<std::string> live) {
  std::sort(live.begin(), live.end());
  live.erase(std::unique(live.begin(), live.end()), live.end());
  std::erase(live, self_);
  std::vector<std::vector<std::string>> keepers_before;
  keepers_before.reserve(local_.size());
  for (const auto& name : local_)
    keepers_before.push_back(keepers(name));
  peers_ = std::move(live);
  // Who is not live holds nothing any more: the owner (maybe the backup
  // that just became owner) tells the application what only they held.
  // That includes a node whose delta came before it ever entered the view.
  std::set<std::string> stale;
  for (const auto& [name, nodes] : holders_)
    for (const auto& n : nodes)
      if (n != self_ && !std::binary_search(peers_.begin(), peers_.end(), n))
        stale.insert(n);
  for (const auto& n : stale)
    drop_node(n, false);
  std::erase_if(mismatches_, [&](const auto& e) {
    return !std::binary_search(peers_.begin(), peers_.end(), e.first);
  });
  std::erase_if(repairing_, [&](const auto& e) {
    return !std::binary_search(peers_.begin(), peers_.end(), e.first);
  });
  // names this node keeps no more: their keepers now hear from every holder
  std::erase_if(holders_, [&](const auto& e) { return !keeps(e.first); });
  std::size_t i = 0;
  for (const auto& name : local_) {
    const auto& before = keepers_before[i++];
    for (const auto& k : keepers(name))
      if (std::find(before.begin(), before.end(), k) == before.end())
        sync(k, name);
  }
}

void occupancy_table::on_restart(const std::string& node) {
  repairing_.erase(node);
  mismatches_.erase(node);
  drop_node(node, true);
  for (const auto& name : local_) { // it lost what it kept
    auto k = keepers(name);
    if (std::find(k.begin(), k.end(), node) != k.end())
      sync(node, name);
  }
}

} // namespace wsnode::actors
