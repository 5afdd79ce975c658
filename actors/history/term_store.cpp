#include "actors/history/term_store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace wsnode::actors {

namespace {

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Writes `text` to `path` so that either the old or the new content
// survives a crash: a temporary file, fsync, rename, fsync of the folder.
bool write_durably(const std::string& path, const std::string& text) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return false;
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return false;
  auto slash = path.find_last_of('/');
  auto dir = slash == std::string::npos ? std::string{"."} : path.substr(0, slash + 1);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return false;
  ok = ::fsync(dfd) == 0;
  ::close(dfd);
  return ok;
}

} // namespace

term_store::term_store(std::string path, std::uint64_t at_least)
  : path_(std::move(path)), floor_(at_least), ceiling_(at_least) {
  if (path_.empty())
    return;
  std::ifstream in{path_};
  if (!in) {
    if (::access(path_.c_str(), F_OK) == 0)
      throw std::runtime_error("history: cannot read " + path_);
    return; // first start: nothing promised yet
  }
  std::string text;
  std::getline(in, text);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || text.empty())
    throw std::runtime_error("history: " + path_ + " does not hold a term (\"" +
                             text.substr(0, 40) +
                             "\"); remove it only if this node's promises may be forgotten");
  floor_ = ceiling_ = std::max(v, at_least);
}

bool term_store::reserve(std::uint64_t term) {
  if (path_.empty() || term <= ceiling_)
    return true;
  auto next = term + block;
  if (!write_durably(path_, std::to_string(next) + "\n")) {
    spdlog::error("history: cannot write {}: {}; promises wait until it can be written", path_,
                  std::strerror(errno));
    return false;
  }
  ceiling_ = next;
  return true;
}

std::uint64_t term_store::floor_of_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("history: cannot create state_dir " + dir + ": " + ec.message());
  if (::access(dir.c_str(), W_OK) != 0)
    throw std::runtime_error("history: state_dir " + dir + " is not writable");
  std::uint64_t floor = 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (name.starts_with("history-terms-") && !name.ends_with(".tmp"))
      floor = std::max(floor, term_store{e.path().string()}.floor());
  }
  if (ec)
    throw std::runtime_error("history: cannot read state_dir " + dir + ": " + ec.message());
  return floor;
}

} // namespace wsnode::actors
