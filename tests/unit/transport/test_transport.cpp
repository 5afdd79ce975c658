#include "protocol/auth_token.hpp"
#include "transport/static_files.hpp"
#include "transport/upgrade.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace wsnode;
using namespace wsnode::transport;
namespace fs = std::filesystem;

TEST_CASE("static_path: index, files, and no way out of the root") {
  auto root = fs::temp_directory_path() / ("wsnode-static-" + std::to_string(::getpid()));
  fs::create_directories(root / "js");
  std::ofstream{root / "index.html"} << "<p>hi</p>";
  std::ofstream{root / "js" / "app.js"} << "1";
  std::ofstream{root / ".secret"} << "x";
  std::ofstream{root.parent_path() / "outside.txt"} << "x";
  fs::create_symlink(root.parent_path() / "outside.txt", root / "link.txt");

  CHECK(static_path(root, {}) == root / "index.html");
  CHECK(static_path(root, {""}) == root / "index.html");
  CHECK(static_path(root, {"js", "app.js"}) == root / "js" / "app.js");
  CHECK(static_path(root, {"js", ""}) == std::nullopt); // no js/index.html
  CHECK_FALSE(static_path(root, {"missing.html"}));
  CHECK_FALSE(static_path(root, {"..", "outside.txt"}));
  CHECK_FALSE(static_path(root, {"js", "..", "..", "outside.txt"}));
  CHECK_FALSE(static_path(root, {".secret"}));
  CHECK_FALSE(static_path(root, {"js/../../outside.txt"}));
  CHECK_FALSE(static_path(root, {std::string("index.html\0x", 12)}));
  CHECK_FALSE(static_path(root, {"link.txt"})); // symlink escaping the root
  CHECK_FALSE(static_path("", {"index.html"}));
  fs::remove_all(root);
  fs::remove(root.parent_path() / "outside.txt");
}

TEST_CASE("mime types") {
  CHECK(mime_type("index.html") == "text/html; charset=utf-8");
  CHECK(mime_type("wsnode.JS") == "text/javascript; charset=utf-8");
  CHECK(mime_type("style.css") == "text/css; charset=utf-8");
  CHECK(mime_type("x.svg") == "image/svg+xml");
  CHECK(mime_type("noext") == "application/octet-stream");
}

TEST_CASE("upgrade decisions in dev mode") {
  server_options o;
  auto d = decide_upgrade(o, o.access, false, "/ws?user=alice", "");
  CHECK(d.accepted());
  CHECK(d.user == "alice");
  CHECK(decide_upgrade(o, o.access, false, "/websocket/bob", "").user == "bob");
  CHECK(decide_upgrade(o, o.access, false, "/ws?user=a%40b.c", "").user == "a@b.c");
  CHECK(decide_upgrade(o, o.access, false, "/ws", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/ws?user=bad%20name", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/websocket/a/b", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/other", "").status == 404);
  CHECK(decide_upgrade(o, o.access, true, "/ws?user=alice", "").status == 503);
  CHECK(is_ws_path("/ws?x=1"));
  CHECK(is_ws_path("/websocket/x"));
  CHECK_FALSE(is_ws_path("/wss"));
  CHECK_FALSE(is_ws_path("/websocket/"));
}

TEST_CASE("upgrade decisions with a secret and an Origin allow-list") {
  server_options o;
  o.access.verifier =
      std::make_shared<const protocol::token_verifier>(protocol::token_keys{"k", {}, {}, {}});
  o.access.allowed_origins = {"https://app.example"};
  auto token = protocol::sign_token("alice", "k", std::chrono::hours(1));
  auto ok = decide_upgrade(o, o.access, false, "/ws?token=" + token, "https://app.example");
  CHECK(ok.accepted());
  CHECK(ok.user == "alice");
  CHECK(ok.exp.has_value());
  auto with_channels = protocol::sign_token("alice", "k", std::chrono::hours(1), {{"room:7"}, {}});
  CHECK(decide_upgrade(o, o.access, false, "/ws?token=" + with_channels, "").channels ==
        std::vector<std::string>{"room:7"});
  CHECK(decide_upgrade(o, o.access, false, "/ws?token=" + token, "").accepted()); // non-browser
  auto evil = decide_upgrade(o, o.access, false, "/ws?token=" + token, "https://evil.example");
  CHECK(evil.status == 403);
  CHECK(evil.reason == reject_reason::origin);
  CHECK(decide_upgrade(o, o.access, false, "/ws", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/ws?user=alice", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/ws?token=" + token + "&user=bob", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/websocket/alice", "").status == 401);
  CHECK(decide_upgrade(o, o.access, false, "/ws?token=garbage", "").status == 401);
  auto expired = protocol::sign_token("alice", "k", -std::chrono::hours(1));
  CHECK(decide_upgrade(o, o.access, false, "/ws?token=" + expired, "").status == 401);
  o.access.allowed_origins = {"*"};
  CHECK(decide_upgrade(o, o.access, false, "/ws?token=" + token, "https://any.example").accepted());
}
