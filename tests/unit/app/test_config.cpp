#include "app/config.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace wsnode;
using namespace wsnode::actors;

namespace {

std::string key_of(std::string_view text) {
  try {
    parse_config(text, ".");
  } catch (const config_error& e) {
    return e.key().empty() ? "<file>" : e.key();
  }
  return "";
}

} // namespace

TEST_CASE("defaults: one loopback node in dev mode") {
  auto c = parse_config("", "/etc/wsnode");
  CHECK(c.node_id == "n1");
  CHECK(c.host == "127.0.0.1");
  CHECK(c.port == 8080);
  CHECK(c.dev_mode());
  CHECK(c.max_message_bytes == 65536);
  CHECK(c.allowed_origins.empty());
  CHECK_FALSE(c.compression);
  CHECK(c.mesh_bind.empty());
  CHECK(c.static_dir == "/etc/wsnode/web");
}

TEST_CASE("the shipped config.toml is valid") {
  auto c = load_config(std::filesystem::path{WSNODE_SOURCE_DIR} / "config.toml");
  CHECK(c.port == 8080);
  CHECK(c.dev_mode());
}

TEST_CASE("values are read") {
  auto c = parse_config(R"(
[node]
id = "edge-7"
drain_timeout_ms = 2500
[http]
listen = "[::1]:9000"
static_dir = "/srv/www"
[auth]
secret = "s3cret"
[ws]
allowed_origins = ["https://a.example", "https://b.example"]
max_queue_bytes = 4096
ping_interval_ms = 1000
[limits]
messages_per_second = 2.5
[channels]
readonly_namespaces = ["news"]
[mesh]
bind = "tcp://127.0.0.1:7001"
peers = ["tcp://10.0.0.2:7001", "tcp://node3.internal:7001"]
[runtime]
scheduler = "stealing"
broker_shards = 4
)",
                        ".");
  CHECK(c.node_id == "edge-7");
  CHECK(c.drain_timeout.count() == 2500);
  CHECK(c.host == "::1");
  CHECK(c.port == 9000);
  CHECK(c.static_dir == "/srv/www");
  CHECK_FALSE(c.dev_mode());
  CHECK(c.allowed_origins.size() == 2);
  CHECK(c.max_queue_bytes == 4096);
  CHECK(c.messages_per_second == doctest::Approx(2.5));
  CHECK(c.readonly_namespaces == std::vector<std::string>{"news"});
  CHECK(c.mesh_peers.size() == 2);
  CHECK(c.scheduler == "stealing");
  CHECK(c.broker_shards == 4);
}

TEST_CASE("bad configs name the key") {
  CHECK(key_of("[node]\nidd = \"x\"\n") == "node.idd");
  CHECK(key_of("[nodes]\nid = \"x\"\n") == "nodes");
  CHECK(key_of("node = 1\n") == "node");
  CHECK(key_of("[node]\nid = 5\n") == "node.id");
  CHECK(key_of("[node]\nid = \"a b\"\n") == "node.id");
  CHECK(key_of("[http]\nlisten = \"127.0.0.1\"\n") == "http.listen");
  CHECK(key_of("[http]\nlisten = \"127.0.0.1:99999\"\n") == "http.listen");
  CHECK(key_of("[http]\nlisten = \"::1:80\"\n") == "http.listen");
  CHECK(key_of("[http]\nlisten = 8080\n") == "http.listen");
  CHECK(key_of("[ws]\nmax_message_bytes = -1\n") == "ws.max_message_bytes");
  CHECK(key_of("[ws]\nmax_message_bytes = \"64k\"\n") == "ws.max_message_bytes");
  CHECK(key_of("[ws]\ncompression = 1\n") == "ws.compression");
  CHECK(key_of("[ws]\nallowed_origins = \"x\"\n") == "ws.allowed_origins");
  CHECK(key_of("[ws]\nallowed_origins = [1]\n") == "ws.allowed_origins");
  CHECK(key_of("[ws]\nflush_helper_min = 1\n") == "ws.flush_helper_min");
  CHECK(key_of("[ws]\nflush_helper_min = -5\n") == "ws.flush_helper_min");
  CHECK(key_of("[ws]\nflush_helper_min = 0\n").empty());
  CHECK(key_of("[limits]\nburst = 0\n") == "limits.burst");
  CHECK(key_of("[mesh]\nbind = \"127.0.0.1:7000\"\n") == "mesh.bind");
  CHECK(key_of("[mesh]\nbind = \"tcp://127.0.0.1:7000\"\npeers = [\"tcp://x\"]\n") == "mesh.peers");
  CHECK(key_of("[mesh]\npeers = [\"tcp://127.0.0.1:7001\"]\n") == "mesh.bind");
  CHECK(key_of("[log]\nlevel = \"loud\"\n") == "log.level");
  CHECK(key_of("[log]\nformat = \"xml\"\n") == "log.format");
  CHECK(key_of("[log]\nformat = \"json\"\n").empty());
  CHECK(key_of("[runtime]\nscheduler = \"spin\"\n") == "runtime.scheduler");
  CHECK(key_of("[runtime]\nbroker_shards = 0\n") == "runtime.broker_shards");
  CHECK(key_of("[runtime]\nbroker_shards = 65\n") == "runtime.broker_shards");
  CHECK(key_of("[channels]\nreadonly_namespaces = [\"a:b\"]\n") == "channels.readonly_namespaces");
  CHECK(key_of("[node\n") == "<file>");
}

TEST_CASE("dev mode and an open API are refused on non-loopback listeners") {
  CHECK(key_of("[http]\nlisten = \"0.0.0.0:8080\"\n") == "auth.secret");
  CHECK(key_of("[http]\nlisten = \"10.1.2.3:8080\"\n[auth]\nsecret = \"s\"\n") == "api.key");
  CHECK(key_of("[http]\nlisten = \"0.0.0.0:8080\"\n[auth]\nsecret = \"s\"\n[api]\nkey = \"k\"\n")
            .empty());
  CHECK(key_of("[http]\nlisten = \"127.0.0.2:8080\"\n").empty());
  CHECK(key_of("[http]\nlisten = \"localhost:8080\"\n").empty());
  CHECK(is_loopback("127.0.0.1"));
  CHECK(is_loopback("::1"));
  CHECK_FALSE(is_loopback("127.0.0.1.evil.com"));
  CHECK_FALSE(is_loopback("0.0.0.0"));
}

TEST_CASE("unreadable files are refused") {
  CHECK_THROWS_AS(load_config("/nonexistent/wsnode.toml"), config_error);
  CHECK_THROWS_AS(load_config("/"), config_error);
}

TEST_CASE("[[namespace]] tables: history keys, policy keys, readonly_namespaces") {
  auto c = parse_config(R"(
[channels]
readonly_namespaces = ["news"]
[history]
idempotency_window_ms = 60000
[[namespace]]
name = "room"
history_size = 50
history_ttl_ms = 2000
recovery_max = 20
publish = "anyone"
[[namespace]]
name = ""
[[namespace]]
name = "dm"
subscribe = "token"
publish = "subscribers"
presence = true
join_leave = true
[[namespace]]
name = "danmaku"
lossy = true
)",
                        ".");
  REQUIRE(c.namespaces.size() == 5);
  namespace_table t{c.namespaces};
  CHECK(t.of_channel("room:1").history_size == 50);
  CHECK(t.of_channel("room:1").history_ttl == std::chrono::milliseconds{2000});
  CHECK(t.of_channel("room:1").recovery_max == 20);
  CHECK(t.of_channel("plain").name.empty());
  CHECK_FALSE(t.of_channel("plain").has_history());
  CHECK(t.of_channel("news:a").publish == publish_rule::server); // readonly_namespaces
  CHECK(t.of_channel("other:a").publish == publish_rule::anyone);
  CHECK(t.of_channel("dm:x").subscribe == subscribe_rule::token);
  CHECK(t.of_channel("dm:x").publish == publish_rule::subscribers);
  CHECK(t.of_channel("dm:x").presence);
  CHECK(t.of_channel("dm:x").join_leave);
  CHECK(t.of_channel("danmaku:x").lossy);
  CHECK_FALSE(t.of_channel("room:1").lossy);
  CHECK(t.any_history());
  CHECK(c.idempotency_window == std::chrono::milliseconds{60000});

  CHECK(key_of("[[namespace]]\nhistory_size = 1\n") == "namespace[0].name");
  CHECK(key_of("[[namespace]]\nname = \"a:b\"\n") == "namespace[0].name");
  CHECK(key_of("[[namespace]]\nname = \"a\"\n[[namespace]]\nname = \"a\"\n") ==
        "namespace[1].name");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nhistroy_size = 1\n") == "namespace[0].histroy_size");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nhistory_size = -1\n") == "namespace[0].history_size");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nhistory_size = 5\nhistory_ttl_ms = 10\n") ==
        "namespace[0].history_ttl_ms");
  CHECK(key_of("[[namespace]]\nname = \"a\"\npublish = \"everyone\"\n") == "namespace[0].publish");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nsubscribe = \"tokens\"\n") ==
        "namespace[0].subscribe");
  CHECK(key_of("[[namespace]]\nname = \"a\"\njoin_leave = true\n") == "namespace[0].join_leave");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nmax_subscribers = -1\n") ==
        "namespace[0].max_subscribers");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nevents = 1\n") == "namespace[0].events");
  auto capped =
      parse_config("[[namespace]]\nname = \"a\"\nmax_subscribers = 5\nevents = false\n", ".");
  CHECK(capped.namespaces.at(0).max_subscribers == 5);
  CHECK_FALSE(capped.namespaces.at(0).events);
  // merged frames and presence by counts
  auto danmaku = parse_config(
      "[[namespace]]\nname = \"d\"\nmerge_ms = 200\nmerge_max = 20\npresence = \"count\"\n", ".");
  CHECK(danmaku.namespaces.at(0).merge_ms == std::chrono::milliseconds(200));
  CHECK(danmaku.namespaces.at(0).merge_max == 20);
  CHECK(danmaku.namespaces.at(0).presence);
  CHECK(danmaku.namespaces.at(0).presence_count);
  CHECK(key_of("[[namespace]]\nname = \"a\"\nmerge_ms = 10001\n") == "namespace[0].merge_ms");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nmerge_max = 0\n") == "namespace[0].merge_max");
  CHECK(key_of("[[namespace]]\nname = \"a\"\npresence = \"members\"\n") == "namespace[0].presence");
  CHECK(key_of("[[namespace]]\nname = \"a\"\npresence = \"count\"\njoin_leave = true\n") ==
        "namespace[0].join_leave");
  CHECK(key_of("namespace = 3\n") == "namespace");
  CHECK(key_of("[history]\nidempotency_window_ms = 5\n") == "history.idempotency_window_ms");
}

TEST_CASE("[hooks]: keys are read and checked against the namespaces") {
  auto c = parse_config(R"(
[hooks]
connect_url = "http://127.0.0.1:9000/ws/connect"
refresh_url = "http://127.0.0.1:9000/ws/refresh"
publish_url = "http://127.0.0.1:9000/ws/publish"
timeout_ms = 500
max_in_flight = 8
forward_headers = ["Cookie", "X-Forwarded-For"]
secret = "s"
[[namespace]]
name = "chat"
publish_hook = true
)",
                        ".");
  CHECK(c.connect_hook());
  CHECK(c.hook_timeout.count() == 500);
  CHECK(c.hook_max_in_flight == 8);
  CHECK(c.hook_forward_headers.size() == 2);
  CHECK(c.namespaces.at(0).publish_hook);
  CHECK_FALSE(c.namespaces.at(0).subscribe_hook);
  CHECK(key_of("[hooks]\nconnect_url = \"https://a:1/x\"") == "hooks.connect_url");
  CHECK(key_of("[hooks]\nrpc_url = \"ftp://a/x\"") == "hooks.rpc_url");
  CHECK(key_of("[hooks]\nrpc_url = \"http://u:p@a:1/x\"") == "hooks.rpc_url");
  CHECK(key_of("[hooks]\nevents_url = \"http://a:1/x\"") == "hooks.secret");
  CHECK(key_of("[hooks]\nevents_url = \"https://a:1/x\"\nsecret = \"s\"") == "hooks.events_url");
  CHECK(key_of("[hooks]\nevents_url = \"http://a:1/x\"\nsecret = \"s\"\nevents = [\"spam\"]") ==
        "hooks.events");
  CHECK(key_of("[hooks]\nevents_url = \"http://a:1/x\"\nsecret = \"s\"\nevents = [\"occupied\", "
               "\"vacated\", \"join\", \"leave\", \"undelivered\"]") == "");
  CHECK(key_of("[hooks]\nevents = [\"connect\"]") == "hooks.events");
  CHECK(key_of("[hooks]\nevents_url = \"http://a:1/x\"\nsecret = \"s\"\nevents = [\"connect\"]") ==
        "");
  CHECK(key_of("[hooks]\nrefresh_url = \"http://a:1/x\"") == "hooks.refresh_url");
  CHECK(key_of("[hooks]\ntimeout_ms = 0") == "hooks.timeout_ms");
  CHECK(key_of("[hooks]\nmax_in_flight = 0") == "hooks.max_in_flight");
  CHECK(key_of("[hooks]\nforward_headers = [\"Bad Header\"]") == "hooks.forward_headers");
  CHECK(key_of("[hooks]\nconnect_urll = \"\"") == "hooks.connect_urll");
  CHECK(key_of("[[namespace]]\nname = \"a\"\npublish_hook = true") == "namespace[0].publish_hook");
  CHECK(key_of("[[namespace]]\nname = \"a\"\nsubscribe_hook = true") ==
        "namespace[0].subscribe_hook");
  // identity from the connect hook: no secret needed off loopback (the API key still is)
  CHECK(key_of("[http]\nlisten = \"0.0.0.0:80\"\n[api]\nkey = \"k\"\n[hooks]\nconnect_url = "
               "\"http://127.0.0.1:9/c\"") == "");
  CHECK(key_of("[http]\nlisten = \"0.0.0.0:80\"\n[api]\nkey = \"k\"") == "auth.secret");
}

TEST_CASE("the example config for the hooks is valid and serves the demo page") {
  auto c = load_config(std::filesystem::path{WSNODE_SOURCE_DIR} / "examples" / "hooks.toml");
  CHECK(c.connect_hook());
  CHECK(std::filesystem::exists(std::filesystem::path{c.static_dir} / "index.html"));
}

TEST_CASE("print_effective: every key, defaults filled in, secrets masked") {
  auto c = parse_config(R"(
[node]
id = "edge-7"
[auth]
secret = "s3cret-hs256"
issuer = "https://auth.example"
[api]
key = "api-k3y"
[ws]
allowed_origins = ["https://a.example"]
[limits]
messages_per_second = 2.5
[channels]
readonly_namespaces = ["news"]
[backbone]
kind = "nats"
[nats]
user = "wsnode"
password = "nats-pa55"
creds_file = ""
[log]
format = "json"
[[namespace]]
name = "room"
history_size = 100
presence = "count"
merge_ms = 50
)",
                        "/etc/wsnode");
  auto text = print_effective(c);
  CAPTURE(text);
  // secrets: "***" when set, "" when not; paths and user names as they are
  CHECK(text.find("s3cret-hs256") == std::string::npos);
  CHECK(text.find("api-k3y") == std::string::npos);
  CHECK(text.find("nats-pa55") == std::string::npos);
  CHECK(text.find("[auth]\nsecret = \"***\"\n") != std::string::npos);
  CHECK(text.find("[api]\nkey = \"***\"\n") != std::string::npos);
  CHECK(text.find("password = \"***\"\n") != std::string::npos);
  CHECK(text.find("token = \"\"\n") != std::string::npos);
  CHECK(text.find("user = \"wsnode\"\n") != std::string::npos);
  CHECK(text.find("public_key_file = \"\"\n") != std::string::npos);
  // values set and defaults, in the names an operator writes
  CHECK(text.find("id = \"edge-7\"\n") != std::string::npos);
  CHECK(text.find("max_message_bytes = 65536\n") != std::string::npos);
  CHECK(text.find("drain_timeout_ms = 10000\n") != std::string::npos);
  CHECK(text.find("coalesce_us = 2000\n") != std::string::npos);
  CHECK(text.find("messages_per_second = 2.5\n") != std::string::npos);
  CHECK(text.find("static_dir = \"/etc/wsnode/web\"\n") != std::string::npos);
  CHECK(text.find("scheduler = \"sharing\"\n") != std::string::npos);
  CHECK(text.find("[log]\nlevel = \"info\"\nformat = \"json\"\n") != std::string::npos);
  CHECK(text.find("presence = \"count\"\n") != std::string::npos);
  CHECK(text.find("merge_ms = 50\n") != std::string::npos);
  CHECK(text.find("merge_max = 50\n") != std::string::npos);
  CHECK(text.find("publish = \"server\"\n") != std::string::npos); // readonly "news"
  for (const char* section :
       {"[node]", "[http]", "[auth]", "[api]", "[ws]", "[limits]", "[channels]", "[history]",
        "[hooks]", "[backbone]", "[mesh]", "[nats]", "[runtime]", "[log]", "[[namespace]]"})
    CHECK_MESSAGE(text.find(std::string{section} + "\n") != std::string::npos, section);

  // the printed text is a config wsnode accepts, meaning the same but for
  // the masked secrets
  auto again = parse_config(text, "/etc/wsnode");
  CHECK(again.auth_secret == "***");
  CHECK(again.api_key == "***");
  CHECK(again.nats_password == "***");
  CHECK(again.node_id == "edge-7");
  CHECK(again.auth_issuer == "https://auth.example");
  CHECK(again.allowed_origins == c.allowed_origins);
  CHECK(again.messages_per_second == doctest::Approx(2.5));
  CHECK(again.static_dir == "/etc/wsnode/web");
  CHECK(again.on_nats());
  CHECK(again.log_format == "json");
  REQUIRE(again.namespaces.size() == 2);
  CHECK(again.namespaces[0].name == "room");
  CHECK(again.namespaces[0].history_size == 100);
  CHECK(again.namespaces[0].presence_count);
  CHECK(again.namespaces[0].merge_ms == std::chrono::milliseconds{50});
  CHECK(again.namespaces[1].name == "news");
  CHECK(again.namespaces[1].publish == publish_rule::server);
  CHECK(again.readonly_namespaces == std::vector<std::string>{"news"});
}

TEST_CASE("print_effective round-trips: print(parse(print(c))) == print(c)") {
  const char* texts[] = {"", R"(
[node]
id = "edge-7"
drain_timeout_ms = 2500
[http]
listen = "[::1]:9000"
static_dir = ""
io_threads = 2
[auth]
issuer = "it's \"quoted\", a \\ and ü"
audience = "tab\there"
[ws]
allowed_origins = ["https://a.example", "https://b.example", "https://c.example",
                   "https://d.example", "https://e.example", "https://f.example"]
compression = true
coalesce_us = 0
[limits]
messages_per_second = 0.1
burst = 1e6
[channels]
readonly_namespaces = ["news", "alerts"]
[history]
state_dir = "/var/lib/wsnode"
[hooks]
connect_url = "http://127.0.0.1:9000/ws/connect?x=1"
subscribe_url = "http://127.0.0.1:9000/ws/subscribe"
forward_headers = ["Cookie"]
[mesh]
bind = "tcp://127.0.0.1:7001"
peers = ["tcp://10.0.0.2:7001"]
[runtime]
scheduler = "stealing"
[log]
level = "warn"
[[namespace]]
name = ""
history_size = 10
[[namespace]]
name = "news"
publish = "anyone"
[[namespace]]
name = "dm"
subscribe = "token"
publish = "subscribers"
presence = true
join_leave = true
subscribe_hook = true
events = false
max_subscribers = 3
)"};
  for (const char* text : texts) {
    auto c = parse_config(text, "/etc/wsnode");
    auto printed = print_effective(c);
    CAPTURE(printed);
    auto again = parse_config(printed, "/etc/wsnode");
    CHECK(print_effective(again) == printed);
    CHECK(again.auth_issuer == c.auth_issuer);
    CHECK(again.auth_audience == c.auth_audience);
    CHECK(again.allowed_origins == c.allowed_origins);
    CHECK(again.messages_per_second == c.messages_per_second);
    CHECK(again.burst == c.burst);
    CHECK(again.static_dir == c.static_dir);
    CHECK(again.namespaces.size() == c.namespaces.size());
  }
}
