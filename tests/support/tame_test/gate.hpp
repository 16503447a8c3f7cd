#pragma once

#include <tame/permit.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>

namespace tame_test {

/// A barrier that tasks wait at until the test opens it (for up to `capacity`
/// waiters in all).
class gate {
  public:
    explicit gate(boost::asio::io_context& io, std::size_t capacity = 10000)
        : sem_{io, capacity}, held_{sem_.try_acquire(capacity)}
    {
    }

    boost::asio::awaitable<void> pass() { co_await sem_.acquire(); }

    void open() { held_.release(); }

  private:
    tame::async_semaphore sem_;
    tame::permit held_;
};

} // namespace tame_test
