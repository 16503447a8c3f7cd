#pragma once

// Runs a test's io_context by hand until one operation has completed.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <tuple>

namespace tame_test {

/// Launches `op` (an asio::deferred operation) with a handler that keeps its
/// results, and runs `io` until it has completed; throws after `limit`.
template <class... T, class Op>
std::tuple<T...> complete(boost::asio::io_context& io, Op op,
                          std::chrono::steady_clock::duration limit = std::chrono::seconds{10})
{
    std::optional<std::tuple<T...>> out;
    std::move(op)([&out](T... values) { out.emplace(std::move(values)...); });
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!out) {
        if (std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error{"tame_test::complete: the operation did not complete"};
        }
        io.run_one_for(std::chrono::milliseconds{10});
        io.restart();
    }
    return std::move(*out);
}

} // namespace tame_test
