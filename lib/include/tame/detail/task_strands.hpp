#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace tame::detail {

/// A new strand of `ex`: of its concrete io_context executor when it has one,
/// which fits inside an any_io_executor (a strand of the type-erased executor
/// needs a shared heap block, whose reference count TSan misreads).
inline asio::any_io_executor make_task_strand(const asio::any_io_executor& ex)
{
    if (const auto* io = ex.target<asio::io_context::executor_type>()) {
        return asio::any_io_executor{asio::make_strand(*io)};
    }
    return asio::any_io_executor{asio::make_strand(ex)};
}

/// The strands a task_group or task_pool runs its tasks on, made up front:
/// making a strand costs more than a short task (~0.6 us), so tasks take turns
/// on a few. `ex` itself when it is already a strand; otherwise `count` new
/// ones (0: twice the hardware threads, enough for every thread to run a
/// task), at most `limit` (0: no limit).
inline std::vector<asio::any_io_executor> make_task_strands(const asio::any_io_executor& ex,
                                                            std::size_t count, std::size_t limit)
{
    using io_executor = asio::io_context::executor_type;
    if (ex.target<asio::strand<io_executor>>() != nullptr ||
        ex.target<asio::strand<asio::any_io_executor>>() != nullptr) {
        return {ex};
    }
    if (count == 0) {
        count = std::max(2u * std::thread::hardware_concurrency(), 2u);
    }
    if (limit != 0) {
        count = std::min(count, limit);
    }
    std::vector<asio::any_io_executor> strands;
    strands.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        strands.push_back(make_task_strand(ex));
    }
    return strands;
}

} // namespace tame::detail
