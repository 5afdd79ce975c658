#include "app/config_reload.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace wsnode;
using namespace wsnode::actors;

namespace {

config parse(const std::string& text) {
  return parse_config(text, "/etc/wsnode");
}

bool has(const std::vector<std::string>& keys, const std::string& k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

const std::string base = R"(
[auth]
secret = "s1-0123456789abcdef0123456789abcdef"
[api]
key = "k1"
[[namespace]]
name = "chat"
history_size = 100
publish = "subscribers"
)";

} // namespace

TEST_CASE("reload: an unchanged file changes nothing") {
  auto p = plan_reload(parse(base), parse(base));
  CHECK(p.changed.empty());
  CHECK(p.restart_only.empty());
  CHECK_FALSE(p.keys_changed);
}

TEST_CASE("reload: keys, API key, origins, limits, level and policy apply") {
  auto next = parse(R"(
[auth]
secret = "s2-0123456789abcdef0123456789abcdef"
key_grace_ms = 5000
[api]
key = "k2"
[ws]
allowed_origins = ["https://app.example"]
[limits]
messages_per_second = 5
[log]
level = "debug"
[[namespace]]
name = "chat"
history_size = 100
publish = "server"
)");
  auto p = plan_reload(parse(base), next);
  CHECK(p.restart_only.empty());
  CHECK(p.keys_changed);
  for (const auto* k : {"auth.secret", "auth.key_grace_ms", "api.key", "ws.allowed_origins",
                        "limits.messages_per_second", "log.level", "namespace.chat.publish"})
    CHECK_MESSAGE(has(p.changed, k), k);
  CHECK(p.next.auth_secret == next.auth_secret);
  CHECK(p.next.key_grace.count() == 5000);
  CHECK(p.next.api_key == "k2");
  CHECK(p.next.messages_per_second == 5);
  CHECK(p.next.log_level == "debug");
  CHECK(p.next.namespaces.at(0).publish == publish_rule::server);
}

TEST_CASE("reload: a key that needs a restart is named and keeps its running value") {
  auto running = parse(base);
  auto p = plan_reload(running, parse(base + R"(
[ws]
compression = true
max_connections = 77
[[namespace]]
name = "news"
)"));
  CHECK(has(p.restart_only, "ws.compression"));
  CHECK(has(p.restart_only, "namespace.news")); // a namespace added: one line, not each key
  CHECK_FALSE(has(p.restart_only, "namespace.news.publish"));
  CHECK(has(p.changed, "ws.max_connections"));
  CHECK_FALSE(p.namespaces_changed); // an added namespace waits: the shards keep their table
  CHECK_FALSE(p.next.compression);
  CHECK(p.next.max_connections == 77);
  CHECK(p.next.namespaces.size() == 1);

  // history: restart only, the rest of the namespace applies
  auto q = plan_reload(running, parse(R"(
[auth]
secret = "s1-0123456789abcdef0123456789abcdef"
[api]
key = "k1"
[[namespace]]
name = "chat"
history_size = 500
publish = "anyone"
)"));
  CHECK(has(q.restart_only, "namespace.chat.history_size"));
  CHECK(has(q.changed, "namespace.chat.publish"));
  CHECK(q.next.namespaces.at(0).history_size == 100);
  CHECK(q.next.namespaces.at(0).publish == publish_rule::anyone);
}

TEST_CASE("reload: dev mode and tokens do not switch without a restart") {
  auto p = plan_reload(parse(""), parse(R"([auth]
secret = "s1-0123456789abcdef0123456789abcdef")"));
  CHECK(has(p.restart_only, "auth.secret"));
  CHECK_FALSE(p.keys_changed);
  CHECK(p.next.dev_mode());
}

TEST_CASE("reload: a namespace hook without its URL waits for a restart") {
  auto p = plan_reload(parse(base), parse(R"(
[auth]
secret = "s1-0123456789abcdef0123456789abcdef"
[api]
key = "k1"
[hooks]
publish_url = "http://127.0.0.1:9/publish"
[[namespace]]
name = "chat"
history_size = 100
publish = "subscribers"
publish_hook = true
)"));
  CHECK(has(p.restart_only, "hooks.publish_url"));
  CHECK(has(p.restart_only, "namespace.chat.publish_hook"));
  CHECK_FALSE(p.next.namespaces.at(0).publish_hook);
}

TEST_CASE("reload: new keys in an unchanged public_key_file are a key change") {
  auto running = parse(base);
  auto file = running;
  running.auth_public_key_file = file.auth_public_key_file = "/etc/wsnode/keys.pem";
  running.auth_public_keys = "-----BEGIN PUBLIC KEY-----\nold\n-----END PUBLIC KEY-----\n";
  file.auth_public_keys = "-----BEGIN PUBLIC KEY-----\nnew\n-----END PUBLIC KEY-----\n";
  auto p = plan_reload(running, file);
  CHECK(p.keys_changed);
  CHECK(p.changed == std::vector<std::string>{"auth.public_key_file"});
  CHECK(p.next.auth_public_keys == file.auth_public_keys);
}

TEST_CASE("reload: delivery keys of a namespace apply; a dotted namespace name is one entry") {
  auto running = parse(base + R"(
[[namespace]]
name = "live"
merge_ms = 200
)");
  auto p = plan_reload(running, parse(base + R"(
[[namespace]]
name = "live"
merge_ms = 0
lossy = true
max_subscribers = 1000
[[namespace]]
name = "a.publish"
)"));
  for (const auto* k :
       {"namespace.live.merge_ms", "namespace.live.lossy", "namespace.live.max_subscribers"})
    CHECK_MESSAGE(has(p.changed, k), k);
  CHECK(p.restart_only == std::vector<std::string>{"namespace.a.publish"});
  CHECK(p.namespaces_changed);
  CHECK(p.next.namespaces.size() == 2);
  CHECK(p.next.namespaces.at(1).lossy);
  CHECK(p.next.namespaces.at(1).merge_ms.count() == 0);
}
