#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/awaitable.hpp>

namespace tame::detail {

/// An awaitable that yields `value` without suspending its awaiter: awaiting a
/// nested awaitable stays inside the calling coroutine's thread of execution,
/// whereas any `co_await async_x(use_awaitable)` goes through the executor.
template <class T>
asio::awaitable<T> ready_awaitable(T value)
{
    co_return value;
}

/// ready_awaitable() for a result of its own: completes without suspending.
inline asio::awaitable<void> ready_awaitable()
{
    co_return;
}

} // namespace tame::detail
