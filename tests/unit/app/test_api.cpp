// The HTTP API's two ends: actors/api_calls.hpp (which shard, what answer)
// and transport's rendering of the outcome with its time bound.
#include "actors/api_calls.hpp"
#include "actors/messages.hpp"
#include "transport/io_pool.hpp"
#include "transport/server.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <caf/all.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <sys/socket.h>
#include <thread>

using namespace wsnode;
using namespace wsnode::actors;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

// A node whose API calls are held: `answer` decides which ones complete.
class held_node final : public node_port {
public:
  std::unique_ptr<session_handler> open_session(const session_identity&, sink_ptr,
                                                std::uint64_t&) override {
    return nullptr;
  }
  void api_publish(std::string, std::string, std::string, api_done done) override {
    keep(std::move(done));
  }
  void api_send(std::string, std::string, api_done done) override { keep(std::move(done)); }
  void api_history(std::string, bool, std::string, std::uint64_t, long long,
                   api_done done) override {
    keep(std::move(done));
  }
  void api_presence(std::string, long long, std::string, api_done done) override {
    keep(std::move(done));
  }
  void api_cluster(cluster_api, std::string, api_done done) override { keep(std::move(done)); }
  void api_broadcast(protocol::broadcast_body, api_done done) override { keep(std::move(done)); }
  bool banned(std::string_view) override { return false; }
  std::string metrics_text() override { return {}; }
  bool readiness(std::string& body) override {
    body = "{}";
    return true;
  }

  std::vector<api_done> calls() {
    std::lock_guard g{mu_};
    return calls_;
  }

private:
  void keep(api_done d) {
    std::lock_guard g{mu_};
    calls_.push_back(std::move(d));
  }
  std::mutex mu_;
  std::vector<api_done> calls_;
};

// One HTTP/1.1 request on a fresh connection; the whole response.
std::string http_post(std::uint16_t port, const std::string& path, const std::string& body) {
  net::io_context io;
  net::ip::tcp::socket s{io};
  s.connect({net::ip::make_address("127.0.0.1"), port});
  timeval tv{10, 0}; // a server that never answers fails the test instead of hanging it
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req =
      "POST " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" +
      "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  net::write(s, net::buffer(req));
  std::string out;
  boost::system::error_code ec;
  net::read(s, net::dynamic_buffer(out), ec); // until the server closes
  return out;
}

struct api_server {
  // the node's held completions own timers of the pool's io_context: the
  // node goes before the pool
  explicit api_server(std::chrono::milliseconds bound) : pool(1) {
    transport::server_options o;
    o.port = 0;
    o.api_timeout = bound;
    srv = std::make_unique<transport::server>(pool, o, node, m);
    srv->start();
    pool.run();
  }
  ~api_server() {
    srv->stop_accepting();
    pool.stop();
    pool.join();
  }
  metrics m;
  transport::io_pool pool;
  held_node node;
  std::unique_ptr<transport::server> srv;
};

} // namespace

TEST_CASE("an API call the node never answers gets 503 within [api] timeout_ms") {
  api_server s{300ms};
  auto t0 = std::chrono::steady_clock::now();
  auto res = http_post(s.srv->port(), "/api/publish", R"({"ch":"room:1","data":1})");
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(res.starts_with("HTTP/1.1 503"));
  CHECK(res.find(R"({"error":"unavailable","msg":"no answer within [api] timeout_ms"})") !=
        std::string::npos);
  CHECK(took >= 300ms);
  CHECK(took < 5s);
  // the node's late answer is dropped: nothing is written twice
  for (auto& done : s.node.calls())
    done({});
}

TEST_CASE("API outcomes are rendered by transport: status and body") {
  api_server s{5s};
  struct row {
    api_outcome outcome;
    std::string status;
    std::string body;
  };
  api_outcome with_off;
  with_off.off = 43;
  api_outcome read;
  read.object = R"({"ch":"room:1","pubs":[]})";
  std::vector<row> rows{
      {{}, "200", R"({"ok":true})"},
      {with_off, "200", R"({"ok":true,"off":43})"},
      {read, "200", R"({"ch":"room:1","pubs":[]})"},
      {api_failed(api_status::bad_request, "no history"), "400",
       R"({"error":"bad_request","msg":"no history"})"},
      {api_failed(api_status::forbidden, "presence off"), "403",
       R"({"error":"forbidden","msg":"presence off"})"},
      {api_failed(api_status::unavailable, "later"), "503",
       R"({"error":"unavailable","msg":"later"})"},
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    auto res = std::async(std::launch::async, [&] {
      return http_post(s.srv->port(), "/api/send", R"({"to":"bob","data":{}})");
    });
    while (s.node.calls().size() <= i)
      std::this_thread::sleep_for(1ms);
    s.node.calls()[i](rows[i].outcome);
    auto text = res.get();
    CHECK(text.starts_with("HTTP/1.1 " + rows[i].status));
    CHECK(text.find("\r\n\r\n" + rows[i].body + "\n") != std::string::npos);
  }
}

TEST_CASE("api_calls: a call whose broker shard is gone is answered unavailable at once") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  metrics m;
  auto ns = std::make_shared<const namespace_table>(std::vector<namespace_options>{});
  auto shard = spawn_broker(sys, m, std::make_shared<local_backbone>());
  auto brokers = std::make_shared<const broker_set>(shard);
  api_calls api{brokers, ns, m};

  // a live shard answers ok
  std::promise<api_outcome> first;
  api.publish("room:1", "1", "", [&](api_outcome o) { first.set_value(std::move(o)); });
  auto f1 = first.get_future();
  REQUIRE(f1.wait_for(5s) == std::future_status::ready);
  CHECK(f1.get().status == api_status::ok);

  // a shard that has quit drops the message, and with it the completion
  caf::anon_send(shard, atoms::shutdown::value);
  {
    caf::scoped_actor self{sys};
    self->wait_for(shard);
  }
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    std::promise<api_outcome> p;
    auto t0 = std::chrono::steady_clock::now();
    auto on_done = [&](api_outcome o) { p.set_value(std::move(o)); };
    if (kind == 0)
      api.publish("room:1", "1", "", on_done);
    else
      api.send("bob", "{}", on_done);
    auto f = p.get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    auto o = f.get();
    CHECK(o.status == api_status::unavailable);
    CHECK(o.msg == "node cannot take messages");
  }
}

TEST_CASE("api_calls: refusals that need no shard") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  metrics m;
  auto ns = std::make_shared<const namespace_table>(std::vector<namespace_options>{});
  auto brokers =
      std::make_shared<const broker_set>(spawn_broker(sys, m, std::make_shared<local_backbone>()));
  api_calls api{brokers, ns, m};
  api_outcome got;
  api.history("room:1", false, {}, 0, -1, [&](api_outcome o) { got = std::move(o); });
  CHECK(got.status == api_status::bad_request);
  CHECK(got.msg == "this channel's namespace keeps no history");
  api.presence("room:1", -1, {}, [&](api_outcome o) { got = std::move(o); });
  CHECK(got.status == api_status::forbidden);
  CHECK(m.refusals[static_cast<std::size_t>(refusal_reason::presence_off)].load() == 1);
  caf::anon_send_exit(brokers->all()[0], caf::exit_reason::user_shutdown);
}
