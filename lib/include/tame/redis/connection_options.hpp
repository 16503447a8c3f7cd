#pragma once

#include <tame/redis/url.hpp>

#include <chrono>
#include <cstddef>

namespace tame::redis {

/// How a tame::redis::connection reaches its server and how long it waits.
struct connection_options {
    /// The server, and the database to SELECT.
    redis::url url;
    /// The longest a connection attempt (resolve, connect, SELECT) may take.
    std::chrono::milliseconds connect_timeout{1000};
    /// The longest a command waits for its reply once sent. Past it the
    /// connection is taken for dead: it is closed, and every command sent on it
    /// completes with errc::redis_unavailable (it may or may not have run).
    std::chrono::milliseconds reply_timeout{2000};
    /// After a failed attempt, the next waits this long, doubling up to
    /// `max_backoff`; a success resets it. Commands issued meanwhile wait for
    /// that attempt, so none waits longer than max_backoff + connect_timeout
    /// to learn that Redis is unavailable.
    std::chrono::milliseconds min_backoff{50};
    std::chrono::milliseconds max_backoff{2000};
    /// Messages a subscription buffers for a receiver that does not keep up;
    /// past it the oldest are dropped and the next message says so.
    std::size_t max_buffered_messages = 4096;
};

} // namespace tame::redis
