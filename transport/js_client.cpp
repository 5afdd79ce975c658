#include "transport/js_client.hpp"

#include <nats/nats.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace wsnode::transport::js {

namespace {
using clock = std::chrono::steady_clock;
constexpr auto sweep_interval = std::chrono::milliseconds(50);
} // namespace

int reply::status() const {
  if (msg_ == nullptr)
    return 0;
  const char* s = nullptr;
  if (natsMsgHeader_Get(msg_, "Status", &s) != NATS_OK || s == nullptr)
    return natsMsg_IsNoResponders(msg_) ? 503 : 0;
  int v = 0;
  std::from_chars(s, s + std::strlen(s), v);
  return v;
}

std::string_view reply::data() const {
  if (msg_ == nullptr)
    return {};
  return {natsMsg_GetData(msg_), static_cast<std::size_t>(natsMsg_GetDataLength(msg_))};
}

std::string_view reply::header(const char* key) const {
  const char* v = nullptr;
  if (msg_ == nullptr || natsMsgHeader_Get(msg_, key, &v) != NATS_OK || v == nullptr)
    return {};
  return v;
}

std::uint64_t reply::header_u64(const char* key) const {
  auto v = header(key);
  std::uint64_t out = 0;
  std::from_chars(v.data(), v.data() + v.size(), out);
  return out;
}

struct client::impl {
  struct waiting {
    clock::time_point deadline;
    reply_fn fn;
  };

  natsConnection* nc;
  std::string inbox; // "_INBOX.<random>."
  natsSubscription* sub = nullptr;
  std::mutex mu;
  std::condition_variable wake;
  std::map<std::uint64_t, waiting> pending;
  std::multimap<clock::time_point, std::function<void()>> tasks;
  std::uint64_t next_id = 1;
  bool stopping = false;
  std::atomic<int> in_callback{0};
  std::thread timer;

  explicit impl(natsConnection* c) : nc(c) {
    std::random_device rd;
    inbox = "_INBOX.wsn" + std::to_string((static_cast<std::uint64_t>(rd()) << 32) ^ rd()) + ".";
  }

  static void on_reply(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto& self = *static_cast<impl*>(closure);
    self.in_callback.fetch_add(1);
    std::string_view subject = natsMsg_GetSubject(msg);
    std::uint64_t id = 0;
    auto tail = subject.substr(std::min(subject.size(), self.inbox.size()));
    std::from_chars(tail.data(), tail.data() + tail.size(), id);
    reply_fn fn;
    {
      std::lock_guard<std::mutex> g{self.mu};
      auto it = self.pending.find(id);
      if (it != self.pending.end()) {
        fn = std::move(it->second.fn);
        self.pending.erase(it);
      }
    }
    if (fn) // else: answered after its timeout (already told)
      fn(reply{msg});
    natsMsg_Destroy(msg);
    self.in_callback.fetch_sub(1);
  }

  void run() {
    std::unique_lock<std::mutex> l{mu};
    while (!stopping) {
      auto until = clock::now() + sweep_interval;
      if (!tasks.empty())
        until = std::min(until, tasks.begin()->first);
      wake.wait_until(l, until);
      if (stopping)
        break;
      auto now = clock::now();
      std::vector<reply_fn> expired;
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second.fn));
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
      std::vector<std::function<void()>> due;
      while (!tasks.empty() && tasks.begin()->first <= now) {
        due.push_back(std::move(tasks.begin()->second));
        tasks.erase(tasks.begin());
      }
      l.unlock();
      for (auto& fn : expired)
        fn(reply{});
      for (auto& fn : due)
        fn();
      l.lock();
    }
  }
};

client::client(natsConnection* nc) : impl_(std::make_unique<impl>(nc)) {}

client::~client() {
  stop();
}

void client::start() {
  auto& i = *impl_;
  auto subject = i.inbox + "*";
  natsConnection_Subscribe(&i.sub, i.nc, subject.c_str(), impl::on_reply, &i);
  if (i.sub != nullptr) // answers are never dropped for being slow: they are few and bounded
    natsSubscription_SetPendingLimits(i.sub, -1, -1);
  i.timer = std::thread([&i] { i.run(); });
}

void client::stop() {
  auto& i = *impl_;
  std::map<std::uint64_t, impl::waiting> left;
  {
    std::lock_guard<std::mutex> g{i.mu};
    if (i.stopping)
      return;
    i.stopping = true;
    i.wake.notify_all();
    left.swap(i.pending);
    i.tasks.clear();
  }
  if (i.timer.joinable())
    i.timer.join();
  if (i.sub != nullptr) {
    natsSubscription_Unsubscribe(i.sub);
    while (i.in_callback.load() > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    natsSubscription_Destroy(i.sub);
    i.sub = nullptr;
  }
  for (auto& [id, w] : left)
    w.fn(reply{});
}

void client::request(const std::string& subject, std::string_view body, const headers& hdrs,
                     std::chrono::milliseconds timeout, reply_fn fn) {
  auto& i = *impl_;
  std::uint64_t id = 0;
  {
    std::lock_guard<std::mutex> g{i.mu};
    if (i.stopping) {
      fn(reply{});
      return;
    }
    id = i.next_id++;
    i.pending.emplace(id, impl::waiting{clock::now() + timeout, std::move(fn)});
  }
  auto reply_to = i.inbox + std::to_string(id);
  natsMsg* m = nullptr;
  // Not while disconnected: nats.c would buffer the request and send it on
  // reconnect, after its caller was told "no answer" (a publish answered
  // "unavailable" would then be stored anyway). The caller retries.
  natsStatus s =
      natsConnection_Status(i.nc) == NATS_CONN_STATUS_CONNECTED ? NATS_OK : NATS_NOT_YET_CONNECTED;
  if (s == NATS_OK)
    s = natsMsg_Create(&m, subject.c_str(), reply_to.c_str(), body.data(),
                       static_cast<int>(body.size()));
  for (const auto& [k, v] : hdrs)
    if (s == NATS_OK)
      s = natsMsgHeader_Set(m, k.c_str(), v.c_str());
  if (s == NATS_OK)
    s = natsConnection_PublishMsg(i.nc, m);
  natsMsg_Destroy(m);
  if (s == NATS_OK)
    return;
  reply_fn failed; // not sent (disconnected, buffer full): answer now as timed out
  {
    std::lock_guard<std::mutex> g{i.mu};
    auto it = i.pending.find(id);
    if (it != i.pending.end()) {
      failed = std::move(it->second.fn);
      i.pending.erase(it);
    }
  }
  if (failed)
    failed(reply{});
}

void client::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto& i = *impl_;
  std::lock_guard<std::mutex> g{i.mu};
  if (i.stopping)
    return;
  i.tasks.emplace(clock::now() + delay, std::move(fn));
  i.wake.notify_all();
}

} // namespace wsnode::transport::js
