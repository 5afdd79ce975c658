// libFuzzer target for every parser that reads network input: client
// commands, API bodies, server frames (clients/tools), JWTs (?token=), the
// WebSocket framing of client bytes, permessage-deflate offers and
// compressed messages, and the NATS backbone's subject tokens, node messages,
// heartbeats and JetStream answers, and the answers of the application's
// hooks, and the server API's bodies and its node-to-node answers.
// The first byte picks the parser; the rest is the input. Besides "no crash,
// no leak, no UB" it checks that what parses re-encodes to something that
// parses to the same command.
#include "actors/cluster_answers.hpp"
#include "actors/occupancy.hpp"
#include "actors/presence.hpp"
#include "protocol/api_bodies.hpp"
#include "protocol/auth_token.hpp"
#include "protocol/codec.hpp"
#include "protocol/hook_codec.hpp"
#include "protocol/json_scan.hpp"
#include "protocol/names.hpp"
#include "protocol/websocket.hpp"
#include "protocol/ws_deflate.hpp"
#include "transport/js_wire.hpp"
#include "transport/nats_subjects.hpp"
#include "transport/nats_view.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using namespace wsnode::protocol;
namespace ws = wsnode::protocol::ws;

void check(bool ok) {
  if (!ok)
    std::abort();
}

// Client bytes through the frame parser, cut into pieces at the sizes the
// input itself picks. Whatever comes out must obey RFC 6455.
void websocket_frames(std::string_view in) {
  if (in.empty())
    return;
  std::size_t step = 1 + static_cast<unsigned char>(in[0]) % 64;
  in.remove_prefix(1);
  ws::frame_reader r{512, (step & 1) != 0};
  for (std::size_t at = 0; at < in.size(); at += step) {
    auto piece = in.substr(at, step);
    const char* p = piece.data();
    const char* end = p + piece.size();
    while (true) {
      auto ev = r.next(p, end);
      check(p <= end);
      if (ev == ws::frame_reader::event::need_more)
        break;
      if (ev == ws::frame_reader::event::message) {
        auto m = r.take_message();
        check(m.size() <= 512);
        if (!r.binary() && !r.compressed())
          check(ws::valid_utf8(m));
      } else if (ev == ws::frame_reader::event::close) {
        check(r.close_code() == 1005 || ws::valid_close_code(r.close_code()));
        check(ws::valid_utf8(r.close_reason()));
      } else if (ev == ws::frame_reader::event::ping || ev == ws::frame_reader::event::pong) {
        check(r.control_payload().size() <= 125);
      } else if (ev == ws::frame_reader::event::error) {
        auto code = r.error_code();
        check(code == 1002 || code == 1007 || code == 1009);
        if (!r.skip_data())
          return;
      }
    }
  }
}

// An extensions header, then the rest as a compressed message.
void websocket_deflate(std::string_view in) {
  auto cut = in.find('\n');
  auto header = in.substr(0, cut);
  if (auto p = ws::negotiate_deflate(header)) {
    check(p->server_window_bits >= 9 && p->server_window_bits <= 15);
    check(!ws::deflate_response(*p).empty());
  }
  if (cut == std::string_view::npos)
    return;
  auto body = in.substr(cut + 1);
  ws::inflater inf;
  std::string out;
  auto r = inf.decompress(body, out, 4096);
  check(out.size() <= 4096);
  if (r == ws::inflater::result::ok) {
    // what we compress, we read back
    ws::deflater d{15};
    ws::inflater again;
    std::string back;
    check(again.decompress(d.compress(out), back, 4096) == ws::inflater::result::ok);
    check(back == out);
  }
}

void round_trip(const command& c) {
  auto text = encode_command(c); // `again` views into it
  auto again = parse_command(text, parse_limits{1 << 20});
  auto* back = std::get_if<command>(&again);
  check(back != nullptr);
  check(back->kind == c.kind && back->ch == c.ch && back->to == c.to && back->data == c.data &&
        back->id == c.id);
}

} // namespace

// Presence service messages from a peer (the mesh is another node's
// input): never a crash, and the table stays consistent with its count.
void presence_messages(std::string_view in) {
  static wsnode::metrics m;
  static auto ns = [] {
    wsnode::actors::namespace_options o;
    o.name = "room";
    o.presence = true;
    o.join_leave = true;
    wsnode::actors::namespace_options counted;
    counted.name = "live";
    counted.presence = counted.presence_count = true;
    return std::make_shared<const wsnode::actors::namespace_table>(
        std::vector<wsnode::actors::namespace_options>{o, counted});
  }();
  wsnode::actors::presence_table t{"me", ns, m, {}};
  t.on_view({"peer"});
  t.add("room:1", 1, "local");
  t.add("live:1", 1, "local");
  // several messages per input, split at NUL bytes
  std::size_t start = 0;
  while (start <= in.size()) {
    auto end = in.find('\0', start);
    if (end == std::string_view::npos)
      end = in.size();
    t.on_message("peer", in.substr(start, end - start));
    start = end + 1;
  }
  check(t.count("room:1") >= 1);
  auto page = t.page("1", "room:1", 1000, {}, false, 65536);
  check(json::validate(page));
  check(t.count("live:1") >= 1);
  check(json::validate(t.page("1", "live:1", 1000, {}, false, 65536)));
  t.leave(1);
  t.on_view({});
  check(t.count("room:1") == 0);
}

// The server API's bodies (an HTTP client's input, and what a peer's desk
// forwards): what parses re-encodes to a body that parses the same.
template <class T, class Parse>
void body_round_trip(std::string_view in, Parse parse) {
  auto r = parse(in);
  if (const auto* b = std::get_if<T>(&r)) {
    check(json::validate(in));
    auto again = parse(encode_body(*b));
    const auto* c = std::get_if<T>(&again);
    check(c != nullptr && encode_body(*c) == encode_body(*b));
  } else {
    check(!std::get<std::string>(r).empty());
  }
}

void server_api(std::string_view in) {
  body_round_trip<disconnect_body>(in, parse_disconnect_body);
  body_round_trip<user_channel_body>(in, parse_user_channel_body);
  body_round_trip<online_body>(in, parse_online_body);
  body_round_trip<channels_body>(in, parse_channels_body);
  auto b = parse_broadcast_body(in, 256);
  if (const auto* x = std::get_if<broadcast_body>(&b))
    check(!x->channels.empty() && x->channels.size() <= max_api_names && json::validate(x->data));
  // a peer's part of any call, merged: always one JSON object
  using namespace wsnode::actors;
  for (int c = 0; c < wsnode::cluster_api_count; ++c) {
    std::vector<node_part> parts{{"n2", std::string{in}}, {"n1", sessions_part(1)}};
    check(json::validate(merge_parts(static_cast<wsnode::cluster_api>(c), parts, 10, {"n3"})));
  }
  // occupancy payloads from a peer: never a crash, nothing announced for a
  // malformed one
  int events = 0;
  occupancy_hooks h;
  h.send = [](const std::string&, std::string) {};
  h.changed = [&](const std::string&, bool) { ++events; };
  h.undelivered = [&](std::string) { ++events; };
  occupancy_table t{"me", h};
  t.on_view({"peer"});
  if (!t.on_message("peer", in))
    check(events == 0);
  t.on_view({});
}

// The NATS backbone's parsers: subject tokens, node messages, heartbeats
// (what other nodes send) and JetStream's answers (transport/js_wire).
void nats_wire(std::string_view in) {
  using namespace wsnode::transport;
  if (auto name = nats::decode_token(in))
    check(nats::encode_token(*name) == in); // one spelling per name
  if (!in.empty())                          // names are never empty
    check(nats::decode_token(nats::encode_token(in)) == std::string{in});
  if (auto t = nats::parse_topic_subject("p", in))
    check(nats::topic_subject("p", t->kind, t->name) == in);
  if (auto m = nats::decode_node_message(in))
    check(nats::encode_node_message(m->kind, m->origin, m->body) == in);
  if (auto hb = nats::decode_heartbeat(in)) {
    nats::node_view v{"n1", std::chrono::milliseconds(1000)};
    v.heard(*hb, nats::clock::now());
    nats::clock::time_point next;
    (void)v.step(nats::clock::now(), 1, next);
  }
  auto a = js::parse_ack(false, 0, in);
  check(a.what != js::pub_ack::kind::ok || a.seq > 0);
  (void)js::stream_created(in);
  (void)js::stream_differs(in);
  for (auto seq : js::split_links(in, 16))
    check(seq > 0);
  for (std::size_t count = 2; count <= 4; ++count)
    if (auto items = js::unpack_record(in, count)) {
      check(items->size() == count);
      check(js::unpack_record(js::pack_record(*items), count).has_value());
    }
}

// An answer of the application's hooks, read as each hook's: what is
// accepted must be what the session and the upgrade can use as is.
void hook_answers(std::string_view in) {
  for (int k = 0; k < hook_kind_count; ++k) {
    auto kind = static_cast<hook_kind>(k);
    auto a = parse_hook_answer(kind, in);
    if (a.what != hook_answer::kind::failed)
      check(json::validate(in));
    switch (a.what) {
    case hook_answer::kind::result:
      if (kind == hook_kind::connect)
        check(valid_user(a.user));
      if (kind == hook_kind::refresh)
        check(a.expire_at.has_value());
      for (const auto& ch : a.channels)
        check(valid_channel(ch));
      if (a.meta)
        check(json::validate(
            encode_session_hook(hook_kind::rpc, {"n1", "n1-1", "u", *a.meta}, "m", "1")));
      if (a.data)
        check(parse_server_frame(encode_rpc_reply("1", *a.data)).has_value());
      break;
    case hook_answer::kind::error:
      check(!a.code.empty() && a.code.size() <= 32);
      check(parse_server_frame(encode_err("1", a.code, a.msg)).has_value());
      break;
    case hook_answer::kind::disconnect:
      check(kind == hook_kind::connect || kind == hook_kind::refresh);
      check(a.close_code >= 3000 && a.close_code <= 4999 && a.reason.size() <= 123);
      check(ws::valid_utf8(a.reason));
      break;
    case hook_answer::kind::failed:
      check(a.failure == hook_failure::malformed);
      break;
    }
  }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string_view in{reinterpret_cast<const char*>(data) + 1, size - 1};
  parse_limits limits;
  limits.max_data_bytes = 256;
  switch (data[0] % 10) {
  case 0: {
    auto r = parse_command(in, limits);
    if (auto* c = std::get_if<command>(&r)) {
      check(json::validate(in));
      round_trip(*c);
      if (c->kind == op::pub)
        check(parse_server_frame(encode_msg(c->ch, "fuzz", c->data)).has_value());
    } else {
      auto& e = std::get<command_error>(r);
      check(parse_server_frame(encode_err(e.id, e.code, e.msg)).has_value());
    }
    break;
  }
  case 1:
    (void)parse_api_body(in, (size & 1) ? op::pub : op::send, limits);
    (void)parse_history_body(in);
    (void)parse_history_body(in, op::presence);
    break;
  case 2: {
    auto f = parse_server_frame(in);
    if (f)
      check(json::validate(in));
    break;
  }
  case 3:
    (void)verify_token(in, "fuzz-secret");
    break;
  case 4:
    websocket_frames(in);
    break;
  case 5:
    websocket_deflate(in);
    break;
  case 6:
    presence_messages(in);
    break;
  case 7:
    nats_wire(in);
    break;
  case 8:
    hook_answers(in);
    break;
  case 9:
    server_api(in);
    break;
  }
  return 0;
}
