#include "protocol/names.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace wsnode::protocol;

TEST_CASE("channel names: 1-128 chars of [A-Za-z0-9_.:-]") {
  CHECK(valid_channel("room:1"));
  CHECK(valid_channel("a"));
  CHECK(valid_channel("live.danmaku:video-42_x"));
  CHECK(valid_channel(std::string(128, 'c')));
  CHECK_FALSE(valid_channel(""));
  CHECK_FALSE(valid_channel(std::string(129, 'c')));
  CHECK_FALSE(valid_channel("room 1"));
  CHECK_FALSE(valid_channel("room/1"));
  CHECK_FALSE(valid_channel("room@1"));
  CHECK_FALSE(valid_channel("r\"oom"));
  CHECK_FALSE(valid_channel("caf\xc3\xa9"));
  CHECK_FALSE(valid_channel(std::string("a\0b", 3)));
}

TEST_CASE("user ids: 1-64 chars of [A-Za-z0-9_.@-]") {
  CHECK(valid_user("alice"));
  CHECK(valid_user("bob@example.com"));
  CHECK(valid_user("u_1.2-3"));
  CHECK(valid_user(std::string(64, 'u')));
  CHECK_FALSE(valid_user(""));
  CHECK_FALSE(valid_user(std::string(65, 'u')));
  CHECK_FALSE(valid_user("a:b"));
  CHECK_FALSE(valid_user("a b"));
  CHECK_FALSE(valid_user("a\\b"));
}

TEST_CASE("namespace is the part before the first ':'") {
  CHECK(channel_namespace("room:1") == "room");
  CHECK(channel_namespace("news:tech:1") == "news");
  CHECK(channel_namespace("lobby").empty());
  CHECK(channel_namespace(":x").empty());
}
