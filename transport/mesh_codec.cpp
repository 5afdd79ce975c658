#include "transport/mesh_codec.hpp"

namespace wsnode::transport::mesh {

namespace {

constexpr std::uint8_t envelope_version = 1;
constexpr std::size_t fixed_size = 1 + 8 + 8 + 1;

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(std::string_view in, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)]);
  return v;
}

} // namespace

std::string encode_topic(topic_kind kind, std::string_view name) {
  std::string t;
  t.reserve(name.size() + 3);
  t += kind == topic_kind::channel ? "c:" : "u:";
  t += name;
  t += '|';
  return t;
}

std::optional<parsed_topic> decode_topic(std::string_view topic) {
  if (topic.size() < 4 || topic.back() != '|' || topic[1] != ':')
    return std::nullopt;
  topic_kind kind;
  if (topic[0] == 'c')
    kind = topic_kind::channel;
  else if (topic[0] == 'u')
    kind = topic_kind::user;
  else
    return std::nullopt;
  auto name = topic.substr(2, topic.size() - 3);
  if (name.find('|') != std::string_view::npos)
    return std::nullopt;
  return parsed_topic{kind, name};
}

std::string encode_envelope(const envelope& e) {
  std::string out;
  out.reserve(fixed_size + e.origin.size());
  out.push_back(static_cast<char>(envelope_version));
  put_u64(out, e.epoch);
  put_u64(out, e.seq);
  out.push_back(static_cast<char>(static_cast<std::uint8_t>(e.origin.size())));
  out += e.origin.substr(0, 255);
  return out;
}

std::optional<envelope> decode_envelope(std::string_view b) {
  if (b.size() < fixed_size || static_cast<std::uint8_t>(b[0]) != envelope_version)
    return std::nullopt;
  std::size_t n = static_cast<unsigned char>(b[17]);
  if (n == 0 || b.size() != fixed_size + n)
    return std::nullopt;
  envelope e;
  e.epoch = get_u64(b, 1);
  e.seq = get_u64(b, 9);
  e.origin = std::string{b.substr(fixed_size, n)};
  return e;
}

seq_tracker::verdict seq_tracker::observe(std::string_view origin, std::uint64_t epoch,
                                          std::string_view topic, std::uint64_t seq) {
  auto it = origins_.find(origin);
  if (it == origins_.end())
    it = origins_.emplace(std::string{origin}, origin_state{}).first;
  auto& o = it->second;
  if (o.epoch != epoch) { // the origin restarted: its counters start over
    o.epoch = epoch;
    o.last.clear();
  }
  auto last = o.last.find(topic);
  if (last == o.last.end()) {
    o.last.emplace(std::string{topic}, seq);
    return {};
  }
  if (seq == 1) { // the origin started the topic's sequence over (nobody wanted it for long)
    last->second = 1;
    return {};
  }
  if (seq <= last->second)
    return {false, 0};
  verdict v{true, seq - last->second - 1};
  last->second = seq;
  return v;
}

void seq_tracker::forget_topic(std::string_view topic) {
  for (auto& [origin, o] : origins_) {
    auto it = o.last.find(topic);
    if (it != o.last.end())
      o.last.erase(it);
  }
}

std::size_t seq_tracker::size() const {
  std::size_t n = 0;
  for (const auto& [origin, o] : origins_)
    n += o.last.size();
  return n;
}

} // namespace wsnode::transport::mesh
