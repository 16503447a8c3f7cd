#include "sync_data/task_slots.hpp"

#include <tame/error.hpp>

#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <utility>

namespace asio = boost::asio;

namespace samples {

task_slots::slot::slot(slot&& other) noexcept
    : local_{std::move(other.local_)}, shared_{std::move(other.shared_)}, held_{std::exchange(
                                                                              other.held_, nullptr)}
{
}

task_slots::slot& task_slots::slot::operator=(slot&& other) noexcept
{
    if (this != &other) {
        if (held_ != nullptr) {
            held_->fetch_sub(1, std::memory_order_relaxed);
        }
        local_ = std::move(other.local_);
        shared_ = std::move(other.shared_);
        held_ = std::exchange(other.held_, nullptr);
    }
    return *this;
}

task_slots::slot::~slot()
{
    if (held_ != nullptr) {
        held_->fetch_sub(1, std::memory_order_relaxed);
    }
}

task_slots::task_slots(const asio::any_io_executor& ex, std::size_t capacity)
{
    local_.emplace(ex, capacity);
}

task_slots::task_slots(tame::redis::connection& redis, const std::string& name,
                       std::size_t capacity, std::chrono::milliseconds lease)
{
    shared_ = std::make_unique<tame::distributed_semaphore>(redis, name, capacity, lease);
}

asio::awaitable<task_slots::slot> task_slots::acquire()
{
    if (closed_.load(std::memory_order_relaxed)) {
        throw boost::system::system_error{tame::errc::closed};
    }
    slot s;
    if (local_) {
        s.local_ = co_await local_->acquire();
    } else {
        s.shared_ = co_await shared_->async_acquire(1, asio::use_awaitable);
    }
    held_.fetch_add(1, std::memory_order_relaxed);
    s.held_ = &held_;
    co_return s;
}

void task_slots::close()
{
    closed_.store(true, std::memory_order_relaxed);
    if (local_) {
        local_->close();
    }
}

} // namespace samples
