#include "transport/js_wire.hpp"

#include "core/backbone.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"
#include "transport/js_client.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <charconv>

namespace wsnode::transport::js {

namespace {
// JetStream's error codes
constexpr std::int64_t err_wrong_last = 10071;    // wrong last sequence
constexpr std::int64_t err_stream_exists = 10058; // stream name in use, another configuration

const boost::json::object* error_of(const boost::json::value& v) {
  const auto* o = v.if_object();
  if (o == nullptr)
    return nullptr;
  const auto* e = o->if_contains("error");
  return e != nullptr ? e->if_object() : nullptr;
}
} // namespace

pub_ack parse_ack(bool timed_out, int status, std::string_view body) {
  pub_ack a;
  if (timed_out || status == 503 || status == 408)
    return a;
  a.what = pub_ack::kind::error;
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  const auto* o = ec ? nullptr : v.if_object();
  if (o == nullptr) {
    a.error = "unreadable answer from JetStream";
    return a;
  }
  if (const auto* e = error_of(v)) {
    const auto* code = e->if_contains("err_code");
    if (code != nullptr && code->is_int64() && code->as_int64() == err_wrong_last)
      a.what = pub_ack::kind::wrong_last;
    if (const auto* d = e->if_contains("description"); d != nullptr && d->is_string())
      a.error = d->as_string().c_str();
    return a;
  }
  const auto* seq = o->if_contains("seq");
  if (seq != nullptr && seq->is_uint64())
    a.seq = seq->as_uint64();
  else if (seq != nullptr && seq->is_int64() && seq->as_int64() > 0)
    a.seq = static_cast<std::uint64_t>(seq->as_int64());
  if (a.seq == 0) {
    a.error = "JetStream answer without a sequence";
    return a;
  }
  const auto* dup = o->if_contains("duplicate");
  bool duplicate = dup != nullptr && dup->is_bool() && dup->as_bool();
  a.what = duplicate ? pub_ack::kind::duplicate : pub_ack::kind::ok;
  return a;
}

bool stream_created(std::string_view body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  return !ec && v.is_object() && error_of(v) == nullptr && v.as_object().contains("config");
}

bool stream_differs(std::string_view body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  const auto* e = ec ? nullptr : error_of(v);
  const auto* code = e != nullptr ? e->if_contains("err_code") : nullptr;
  return code != nullptr && code->is_int64() && code->as_int64() == err_stream_exists;
}

std::string offset_fence(std::string_view ch, std::string_view ep, std::uint64_t off) {
  return fmt::format("{}|{}|{}", ch, ep, off);
}

std::vector<std::uint64_t> split_links(std::string_view list, std::size_t max) {
  std::vector<std::uint64_t> out;
  while (!list.empty() && out.size() < max) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc{} || p != item.data() + item.size() || v == 0)
      break; // not ours: the walk ends here
    out.push_back(v);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  return out;
}

std::string next_links(std::uint64_t last_seq, std::string_view last_links) {
  std::string out = std::to_string(last_seq);
  for (auto s : split_links(last_links, prev_links - 1)) {
    out.push_back(',');
    out += std::to_string(s);
  }
  return out;
}

std::string pack_record(const std::vector<record_item>& items) {
  std::string out = "[";
  for (const auto& it : items) {
    if (out.size() > 1)
      out.push_back(',');
    out += "[\"";
    out += it.from;
    out += "\",";
    out += it.data;
    out.push_back(']');
  }
  out.push_back(']');
  return out;
}

std::optional<std::vector<record_item>> unpack_record(std::string_view body, std::size_t count) {
  using protocol::json::detail::skip_value;
  using protocol::json::detail::skip_ws;
  if (count < 2 || count > max_batch || !protocol::json::validate(body))
    return std::nullopt;
  std::vector<record_item> out;
  std::size_t i = skip_ws(body, 0);
  if (i >= body.size() || body[i] != '[')
    return std::nullopt;
  i = skip_ws(body, i + 1);
  while (i < body.size() && body[i] == '[') {
    std::size_t from_start = skip_ws(body, i + 1);
    std::size_t from_end = skip_value(body, from_start);
    if (from_start >= body.size() || body[from_start] != '"' || from_end < from_start + 2)
      return std::nullopt;
    auto from = body.substr(from_start + 1, from_end - from_start - 2);
    std::size_t comma = skip_ws(body, from_end);
    if (comma >= body.size() || body[comma] != ',')
      return std::nullopt;
    std::size_t data_start = skip_ws(body, comma + 1);
    std::size_t data_end = skip_value(body, data_start);
    std::size_t close = skip_ws(body, data_end);
    if (close >= body.size() || body[close] != ']' || data_end <= data_start)
      return std::nullopt;
    if (!(from.empty() || protocol::valid_user(from)))
      return std::nullopt;
    out.push_back({from, body.substr(data_start, data_end - data_start)});
    i = skip_ws(body, close + 1);
    if (i < body.size() && body[i] == ',')
      i = skip_ws(body, i + 1);
  }
  if (out.size() != count)
    return std::nullopt;
  return out;
}

std::uint64_t record_top(const reply& r) {
  auto off = r.header_u64(h_off);
  auto count = r.header_u64(h_count);
  return off == 0 ? 0 : off + (count > 1 ? count - 1 : 0);
}

std::optional<std::vector<stored_message>> messages_of(const reply& r) {
  auto off = r.header_u64(h_off);
  auto count = r.header_u64(h_count);
  std::vector<stored_message> out;
  if (off == 0)
    return out; // the epoch's marker
  if (count > 1) {
    auto items = unpack_record(r.data(), count);
    if (!items)
      return std::nullopt;
    for (std::size_t i = 0; i < items->size(); ++i)
      out.push_back({off + i, (*items)[i].from, (*items)[i].data});
    return out;
  }
  auto from = r.header(h_from);
  if (!(from.empty() || protocol::valid_user(from)) || !protocol::json::validate(r.data()))
    return std::nullopt;
  out.push_back({off, from, r.data()});
  return out;
}

std::optional<std::vector<std::string>> live_frames(const reply& r, std::string_view ch) {
  auto ep = r.header(h_ep);
  if (ep.empty() || ep.size() > protocol::max_epoch_length)
    return std::nullopt;
  auto msgs = messages_of(r); // written by wsnode, or not passed on: valid frames only
  if (!msgs)
    return std::nullopt;
  std::vector<std::string> out;
  for (const auto& m : *msgs)
    out.push_back(encode_ordered(ep, protocol::encode_msg(ch, m.from, m.off, m.data)));
  return out;
}

} // namespace wsnode::transport::js
