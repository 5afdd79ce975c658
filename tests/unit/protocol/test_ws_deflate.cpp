// RFC 7692 permessage-deflate (protocol/ws_deflate.hpp): the negotiation
// and the deflate/inflate steps, apart from the framing that carries them.
#include "protocol/websocket.hpp"
#include "protocol/ws_deflate.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace wsnode::protocol::ws;

TEST_CASE("permessage-deflate: negotiation") {
  CHECK_FALSE(negotiate_deflate("").has_value());
  CHECK_FALSE(negotiate_deflate("x-webkit-deflate-frame").has_value());
  auto p = negotiate_deflate("permessage-deflate; client_max_window_bits");
  REQUIRE(p);
  CHECK(p->server_window_bits == 15);
  CHECK_FALSE(p->client_no_context);
  CHECK(deflate_response(*p) == "permessage-deflate; server_no_context_takeover");
  p = negotiate_deflate(
      "permessage-deflate; server_max_window_bits=10; client_no_context_takeover");
  REQUIRE(p);
  CHECK(deflate_response(*p) == "permessage-deflate; server_no_context_takeover; "
                                "client_no_context_takeover; server_max_window_bits=10");
  // an offer we cannot honour is skipped for the next one
  p = negotiate_deflate("permessage-deflate; server_max_window_bits=8, permessage-deflate");
  REQUIRE(p);
  CHECK(p->server_window_bits == 15);
  CHECK_FALSE(negotiate_deflate("permessage-deflate; foo=1").has_value());
  CHECK_FALSE(negotiate_deflate("permessage-deflate; server_no_context_takeover; "
                                "server_no_context_takeover")
                  .has_value());
}

TEST_CASE("permessage-deflate: deflate and inflate, with the size limit after decompression") {
  deflater d{15};
  std::string text(20000, 'a');
  auto z = d.compress(text);
  CHECK(z.size() < 200);
  inflater i;
  std::string out;
  CHECK(i.decompress(z, out, 65536) == inflater::result::ok);
  CHECK(out == text);
  // no context between the server's messages: each inflates on its own
  auto z2 = d.compress("second");
  inflater fresh;
  std::string out2;
  CHECK(fresh.decompress(z2, out2, 100) == inflater::result::ok);
  CHECK(out2 == "second");
  std::string small;
  inflater j;
  CHECK(j.decompress(z, small, 1000) == inflater::result::too_big);
  std::string junk;
  inflater k;
  CHECK(k.decompress(std::string("\xff\xff\xff\xff\xff", 5), junk, 1000) ==
        inflater::result::bad_data);
}

TEST_CASE("permessage-deflate: a compressed message frame carries what inflates to the message") {
  deflater d{15};
  std::string text = R"({"op":"msg","ch":"room:1","data":")" + std::string(500, 'x') + "\"}";
  auto frame = make_frame(opcode::text, d.compress(text), true);
  REQUIRE(frame.size() > 4);
  CHECK((static_cast<unsigned char>(frame[0]) & 0x40) != 0);   // RSV1: compressed
  CHECK((static_cast<unsigned char>(frame[0]) & 0x0F) == 0x1); // text
  std::size_t len = static_cast<unsigned char>(frame[1]) & 0x7F;
  std::size_t header = 2;
  if (len == 126) {
    len = (static_cast<std::size_t>(static_cast<unsigned char>(frame[2])) << 8) |
          static_cast<unsigned char>(frame[3]);
    header = 4;
  }
  REQUIRE(frame.size() == header + len);
  inflater i;
  std::string out;
  CHECK(i.decompress(std::string_view{frame}.substr(header), out, 65536) == inflater::result::ok);
  CHECK(out == text);
}
