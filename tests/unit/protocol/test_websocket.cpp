// RFC 6455 framing, without sockets (permessage-deflate: test_ws_deflate.cpp).
#include "protocol/websocket.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace wsnode::protocol::ws;

namespace {

// A masked client frame.
std::string client_frame(unsigned op, std::string_view payload, bool fin = true,
                         bool rsv1 = false) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | op);
  auto n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xFF);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i)
      f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xFF);
  }
  const char mask[4] = {0x37, 0x7a, 0x21, 0x3d};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i)
    f += static_cast<char>(payload[i] ^ mask[i % 4]);
  return f;
}

struct parsed {
  std::vector<std::string> messages;
  std::vector<std::string> pings;
  int pongs = 0;
  std::uint16_t close = 0;
  std::uint16_t error = 0;
};

// Feeds `bytes` in pieces of `step` bytes.
parsed parse(frame_reader& r, const std::string& bytes, std::size_t step = 1 << 20) {
  parsed out;
  for (std::size_t at = 0; at < bytes.size(); at += step) {
    auto piece = std::string_view{bytes}.substr(at, step);
    const char* p = piece.data();
    const char* end = p + piece.size();
    while (true) {
      auto ev = r.next(p, end);
      if (ev == frame_reader::event::need_more)
        break;
      if (ev == frame_reader::event::message)
        out.messages.push_back(r.take_message());
      else if (ev == frame_reader::event::ping)
        out.pings.emplace_back(r.control_payload());
      else if (ev == frame_reader::event::pong)
        ++out.pongs;
      else if (ev == frame_reader::event::close)
        out.close = r.close_code();
      else if (ev == frame_reader::event::error) {
        out.error = r.error_code();
        if (!r.skip_data())
          return out;
      }
    }
  }
  return out;
}

} // namespace

TEST_CASE("websocket: handshake values (RFC 6455 sample key)") {
  CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK_FALSE(valid_client_key(""));
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ"));
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25j!Q=="));
}

TEST_CASE("websocket: UTF-8 validation") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain ascii, long enough for the 8-byte path"));
  CHECK(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  CHECK_FALSE(valid_utf8("\xc3\x28"));         // bad continuation
  CHECK_FALSE(valid_utf8("\xc0\xaf"));         // overlong
  CHECK_FALSE(valid_utf8("\xe0\x80\xaf"));     // overlong
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));     // surrogate
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
  CHECK_FALSE(valid_utf8("abc\xe2\x82"));      // cut short
  CHECK_FALSE(valid_utf8("\xff"));
}

TEST_CASE("websocket: UTF-8 checked piece by piece fails at the first bad byte") {
  const std::string good = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
  for (std::size_t cut = 0; cut <= good.size(); ++cut) {
    utf8_validator v;
    CHECK(v.feed(std::string_view{good}.substr(0, cut)));
    CHECK(v.feed(std::string_view{good}.substr(cut)));
    CHECK(v.complete());
  }
  // each fails on the byte that rules out every valid continuation
  for (std::string_view bad :
       {"\xed\xa0", "\xf4\x90", "\xe0\x9f", "\xf0\x8f", "\xc2\x41", "\xc1"}) {
    utf8_validator v;
    CHECK(v.feed(bad.substr(0, bad.size() - 1)));
    CHECK_FALSE(v.feed(bad.substr(bad.size() - 1)));
    CHECK_FALSE(v.feed("a")); // and stays failed
  }
  utf8_validator cut_short;
  CHECK(cut_short.feed("ok \xe2\x82"));
  CHECK_FALSE(cut_short.complete());
}

TEST_CASE("websocket: invalid UTF-8 fails the message before its end arrives") {
  // the second of three fragments holds a surrogate; the third is never fed
  frame_reader r{1024, false};
  auto first_two =
      client_frame(1, R"({"op":"ping","id":")", false) + client_frame(0, "ok \xed\xa0\x80", false);
  CHECK(parse(r, first_two).error == 1007);
  // one frame, chopped: the bad byte is found in the first half
  frame_reader r2{1024, false};
  auto whole = client_frame(1, "\xff" + std::string(500, 'x'));
  CHECK(parse(r2, whole.substr(0, 100)).error == 1007);
  // a character split across fragments is fine
  frame_reader r3{1024, false};
  auto split = client_frame(1, "\xe2\x82", false) + client_frame(0, "\xac");
  auto out = parse(r3, split);
  CHECK(out.error == 0);
  CHECK(out.messages == std::vector<std::string>{"\xe2\x82\xac"});
  // and the message before a violation is still delivered, in order
  frame_reader r4{1024, false};
  auto then_bad = parse(r4, client_frame(1, "first") + client_frame(3, "x"));
  CHECK(then_bad.messages == std::vector<std::string>{"first"});
  CHECK(then_bad.error == 1002);
}

TEST_CASE("websocket: server frames") {
  CHECK(make_frame(opcode::text, "hi") == std::string("\x81\x02hi"));
  auto big = make_frame(opcode::text, std::string(300, 'x'));
  CHECK(static_cast<unsigned char>(big[1]) == 126);
  CHECK(big.size() == 4 + 300);
  auto huge = make_frame(opcode::binary, std::string(70000, 'x'));
  CHECK(static_cast<unsigned char>(huge[1]) == 127);
  CHECK(huge.size() == 10 + 70000);
  auto c = make_close(1000, std::string(200, 'r'));
  CHECK(c.size() == 2 + 125); // reason cut to fit a control frame
  CHECK(static_cast<unsigned char>(make_frame(opcode::text, "z", true)[0]) == 0xC1);
}

TEST_CASE("websocket: messages across any split, fragments and interleaved control frames") {
  std::string bytes = client_frame(1, R"({"op":"ping"})") + client_frame(1, "frag", false) +
                      client_frame(9, "are you there") + client_frame(0, "ment", false) +
                      client_frame(0, "ed") + client_frame(2, std::string(300, '\0')) +
                      client_frame(10, "") + client_frame(8, std::string("\x03\xe8", 2) + "bye");
  for (std::size_t step : {1, 2, 3, 7, 64, 1 << 20}) {
    frame_reader r{1024, false};
    auto out = parse(r, bytes, step);
    REQUIRE(out.messages.size() == 3);
    CHECK(out.messages[0] == R"({"op":"ping"})");
    CHECK(out.messages[1] == "fragmented");
    CHECK(out.messages[2] == std::string(300, '\0'));
    CHECK(out.pings == std::vector<std::string>{"are you there"});
    CHECK(out.pongs == 1);
    CHECK(out.close == 1000);
    CHECK(out.error == 0);
  }
}

TEST_CASE("websocket: protocol violations") {
  auto error_of = [](std::string bytes, bool compression = false) {
    frame_reader r{1024, compression};
    return parse(r, bytes).error;
  };
  std::string unmasked = "\x81\x02hi";
  CHECK(error_of(unmasked) == 1002);
  CHECK(error_of(client_frame(3, "x")) == 1002);        // reserved opcode
  CHECK(error_of(client_frame(0, "x")) == 1002);        // continuation first
  CHECK(error_of(client_frame(9, "x", false)) == 1002); // fragmented ping
  CHECK(error_of(client_frame(9, std::string(126, 'x'))) == 1002);
  CHECK(error_of(client_frame(1, "x", true, true)) == 1002); // RSV1 without deflate
  CHECK(error_of(client_frame(1, "a", false) + client_frame(1, "b")) == 1002);
  CHECK(error_of(client_frame(8, "\x03")) == 1002);                     // 1-byte close payload
  CHECK(error_of(client_frame(8, std::string("\x03\xed", 2))) == 1002); // code 1005 on the wire
  CHECK(error_of(client_frame(8, std::string("\x03\xe8\xc3\x28", 4))) == 1007);
  CHECK(error_of(client_frame(1, "\xc3\x28")) == 1007);
  CHECK(error_of(client_frame(1, "x", true, true), true) == 0); // RSV1 with deflate
}

TEST_CASE("websocket: too big is 1009, and the rest of the stream stays readable") {
  frame_reader r{100, false};
  auto bytes = client_frame(1, std::string(101, 'x')) + client_frame(1, "late") +
               client_frame(8, std::string("\x03\xe8", 2));
  auto out = parse(r, bytes, 5);
  CHECK(out.error == 1009);
  CHECK(out.messages.empty()); // dropped once closing
  CHECK(out.close == 1000);    // the client's close frame is still found

  frame_reader r2{100, false};
  auto frags = client_frame(1, std::string(60, 'x'), false) + client_frame(0, std::string(60, 'x'));
  CHECK(parse(r2, frags).error == 1009); // the limit applies to the whole message
}
