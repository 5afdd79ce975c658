// A value that SIGHUP may replace while other threads read it (the access
// policy of the listener, the settings of every session): readers take
// the current version, whole and immutable, and keep it for as long as
// they use it; a reload publishes a new one, never edits the old.
#pragma once

#include <atomic>
#include <memory>

namespace wsnode {

template <class T>
class live {
public:
  live() = default;
  explicit live(std::shared_ptr<const T> v) { set(std::move(v)); }
  live(const live&) = delete;
  live& operator=(const live&) = delete;

  /// The current version (shared: valid as long as the caller holds it).
  std::shared_ptr<const T> get() const noexcept { return cur_.load(std::memory_order_acquire); }
  /// The current version's address, for a cheap "did it change?" before
  /// get(): a reader that holds version p compares this with p.get() (p
  /// cannot be freed and its address reused while the reader holds it).
  const T* peek() const noexcept { return raw_.load(std::memory_order_acquire); }
  /// Publishes `v`; readers see it from their next get().
  void set(std::shared_ptr<const T> v) noexcept {
    const T* raw = v.get();
    cur_.store(std::move(v), std::memory_order_release);
    raw_.store(raw, std::memory_order_release);
  }

private:
  std::atomic<std::shared_ptr<const T>> cur_;
  std::atomic<const T*> raw_{nullptr};
};

} // namespace wsnode
