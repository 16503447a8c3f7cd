#pragma once

#include <tame/detail/config.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace tame::detail {

/// The ordering keys of a task_pool that have work: for each, a one-permit
/// semaphore (its turn, granted in submission order) and the number of
/// submissions that hold or wait for it. A key with none left is forgotten, so
/// the map holds only keys with work.
class pool_keys {
  public:
    struct entry {
        entry(std::string key, const asio::any_io_executor& ex) : key{std::move(key)}, turn{ex, 1}
        {
        }
        const std::string key;
        async_semaphore turn;
        std::size_t users = 0; // guarded by the registry's mutex
    };

    /// A submission's claim on its key: keeps the entry until released. Two
    /// pointers, so that moving a task along its steps costs nothing more.
    class hold {
      public:
        hold() noexcept = default;
        hold(pool_keys* keys, entry* e) noexcept : keys_{keys}, entry_{e} {}
        hold(hold&& other) noexcept
            : keys_{std::exchange(other.keys_, nullptr)}, entry_{
                                                              std::exchange(other.entry_, nullptr)}
        {
        }
        hold& operator=(hold&& other) noexcept
        {
            if (this != &other) {
                reset();
                keys_ = std::exchange(other.keys_, nullptr);
                entry_ = std::exchange(other.entry_, nullptr);
            }
            return *this;
        }
        ~hold() { reset(); }

        explicit operator bool() const noexcept { return entry_ != nullptr; }
        async_semaphore& turn() const noexcept { return entry_->turn; }

        void reset() noexcept
        {
            if (keys_ != nullptr) {
                std::exchange(keys_, nullptr)->leave(*std::exchange(entry_, nullptr));
            }
        }

      private:
        pool_keys* keys_ = nullptr;
        entry* entry_ = nullptr;
    };

    explicit pool_keys(asio::any_io_executor ex) : executor_{std::move(ex)} {}

    /// Claims `key` for one more submission.
    hold join(const std::string& key)
    {
        std::lock_guard lock{mutex_};
        auto& slot = map_[key];
        if (!slot) {
            slot = std::make_unique<entry>(key, executor_);
            if (closed_) {
                slot->turn.close();
            }
        }
        ++slot->users;
        return hold{this, slot.get()};
    }

    /// Fails the submissions waiting for their key's turn, and later ones.
    void close() noexcept
    {
        std::lock_guard lock{mutex_};
        closed_ = true;
        for (auto& [key, e] : map_) {
            e->turn.close();
        }
    }

  private:
    void leave(entry& e) noexcept
    {
        std::unique_ptr<entry> gone; // destroyed outside the lock
        std::lock_guard lock{mutex_};
        if (--e.users == 0) {
            auto it = map_.find(e.key);
            gone = std::move(it->second);
            map_.erase(it);
        }
    }

    const asio::any_io_executor executor_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::unique_ptr<entry>> map_;
    bool closed_ = false;
};

} // namespace tame::detail
