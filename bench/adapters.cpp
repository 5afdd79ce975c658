#include "bench/adapters.hpp"

#include <charconv>
#include <cstring>

namespace wsnode::bench {

namespace {

// The unsigned integer after `key` (e.g. "\"i\":") in `s`, or nullopt.
std::optional<std::uint64_t> uint_after(std::string_view s, std::string_view key) {
  auto pos = s.find(key);
  if (pos == std::string_view::npos)
    return std::nullopt;
  const char* b = s.data() + pos + key.size();
  const char* e = s.data() + s.size();
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(b, e, v);
  if (ec != std::errc{} || end == b)
    return std::nullopt;
  return v;
}

bool starts(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// ---------------------------------------------------------------- wsnode v1

class wsnode_codec final : public codec {
public:
  std::string path(const std::string& user, const std::string&) const override {
    return "/ws?user=" + user;
  }
  bool ready_on_open() const override { return false; }
  event on_frame(std::string_view f, std::vector<std::string>&) override {
    if (starts(f, R"({"op":"msg")") || starts(f, R"({"op":"dm")"))
      return {event::message, 0, f};
    if (starts(f, R"({"op":"ack")"))
      return {event::ack, uint_after(f, R"("id":)").value_or(0), {}};
    if (starts(f, R"({"op":"hello")"))
      return {event::ready, 0, {}};
    if (starts(f, R"({"op":"err")"))
      return {event::error, uint_after(f, R"("id":)").value_or(0), f};
    return {};
  }
  std::string subscribe(const std::string& ch, std::uint64_t id) const override {
    return R"({"op":"sub","ch":")" + ch + R"(","id":)" + std::to_string(id) + "}";
  }
  std::string publish(const std::string& ch, const std::string& payload,
                      std::uint64_t id) const override {
    return R"({"op":"pub","ch":")" + ch + R"(","data":)" + payload + R"(,"id":)" +
           std::to_string(id) + "}";
  }
  std::string direct(const std::string& user, const std::string& payload,
                     std::uint64_t id) const override {
    return R"({"op":"send","to":")" + user + R"(","data":)" + payload + R"(,"id":)" +
           std::to_string(id) + "}";
  }
};

// ---------------------------------------------------------------- Socket.IO v4
// engine.io 4 packets over WebSocket: "0{...}" open, "2"/"3" ping/pong,
// "4" + socket.io packet: "0" connect, "2[...]" event, "3" ack, "4" error.
// The bench server (bench/peers/socketio-server.js) answers events
// "sub"(ch), "pub"(ch, data), "dm"(user, data) with acks and emits "msg".

class socketio_codec final : public codec {
public:
  std::string path(const std::string& user, const std::string&) const override {
    return "/socket.io/?EIO=4&transport=websocket&user=" + user;
  }
  bool ready_on_open() const override { return false; }
  event on_frame(std::string_view f, std::vector<std::string>& out) override {
    if (f.empty())
      return {};
    switch (f[0]) {
    case '0': // engine.io open: connect to the default namespace
      out.emplace_back("40");
      return {};
    case '2': // engine.io ping
      out.emplace_back("3");
      return {};
    case '4':
      break;
    default:
      return {};
    }
    if (starts(f, "42"))
      return {event::message, 0, f};
    if (starts(f, "40"))
      return {event::ready, 0, {}};
    if (starts(f, "43")) {
      std::uint64_t id = 0;
      std::from_chars(f.data() + 2, f.data() + f.size(), id);
      return {event::ack, id, {}};
    }
    if (starts(f, "44"))
      return {event::error, 0, f};
    return {};
  }
  std::string subscribe(const std::string& ch, std::uint64_t id) const override {
    return "42" + std::to_string(id) + R"(["sub",")" + ch + R"("])";
  }
  std::string publish(const std::string& ch, const std::string& payload,
                      std::uint64_t id) const override {
    return "42" + std::to_string(id) + R"(["pub",")" + ch + R"(",)" + payload + "]";
  }
  std::string direct(const std::string& user, const std::string& payload,
                     std::uint64_t id) const override {
    return "42" + std::to_string(id) + R"(["dm",")" + user + R"(",)" + payload + "]";
  }
};

// ---------------------------------------------------------------- Nchan
// WebSocket subscribers on /sub/CH receive message bodies as text frames;
// publishing is an HTTP POST to /pub/CH.

class nchan_codec final : public codec {
public:
  std::string path(const std::string&, const std::string& channel) const override {
    return "/sub/" + (channel.empty() ? std::string{"bench.none"} : channel); // publishers too
  }
  bool ready_on_open() const override { return true; }
  event on_frame(std::string_view f, std::vector<std::string>&) override {
    return {event::message, 0, f};
  }
  std::string subscribe(const std::string&, std::uint64_t) const override { return {}; }
  std::string publish(const std::string&, const std::string&, std::uint64_t) const override {
    return {};
  }
  std::string direct(const std::string&, const std::string&, std::uint64_t) const override {
    return {};
  }
};

} // namespace

std::optional<protocol> protocol_from(std::string_view name) {
  if (name == "wsnode")
    return protocol::wsnode;
  if (name == "socketio" || name == "socket.io")
    return protocol::socketio;
  if (name == "nchan")
    return protocol::nchan;
  return std::nullopt;
}

std::string_view to_string(protocol p) {
  switch (p) {
  case protocol::wsnode:
    return "wsnode";
  case protocol::socketio:
    return "socketio";
  case protocol::nchan:
    return "nchan";
  }
  return "?";
}

std::string make_payload(std::uint64_t seq, std::uint64_t sent_ns, std::uint32_t sender,
                         std::size_t size) {
  std::string p = R"({"i":)" + std::to_string(seq) + R"(,"t":)" + std::to_string(sent_ns) +
                  R"(,"s":)" + std::to_string(sender) + R"(,"p":")";
  std::size_t fixed = p.size() + 2;
  if (size > fixed)
    p.append(size - fixed, 'x');
  p += "\"}";
  return p;
}

std::optional<stamp> read_stamp(std::string_view frame) {
  auto seq = uint_after(frame, R"({"i":)");
  auto t = uint_after(frame, R"(,"t":)");
  auto s = uint_after(frame, R"(,"s":)");
  if (!seq || !t || !s)
    return std::nullopt;
  return stamp{*seq, *t, static_cast<std::uint32_t>(*s)};
}

std::unique_ptr<codec> make_codec(protocol p) {
  switch (p) {
  case protocol::wsnode:
    return std::make_unique<wsnode_codec>();
  case protocol::socketio:
    return std::make_unique<socketio_codec>();
  case protocol::nchan:
    return std::make_unique<nchan_codec>();
  }
  return nullptr;
}

http_publish http_publish_for(protocol p, const std::string& ch, const std::string& payload) {
  if (p == protocol::nchan)
    return {"/pub/" + ch, payload};
  return {"/api/publish", R"({"ch":")" + ch + R"(","data":)" + payload + "}"};
}

} // namespace wsnode::bench
