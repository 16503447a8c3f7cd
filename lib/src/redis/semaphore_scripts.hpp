#pragma once

// The Lua scripts of tame::distributed_semaphore (semaphore_scripts.cpp says
// what they keep in Redis and how).

#include <tame/redis/connection.hpp>
#include <tame/redis/script.hpp>

#include <string>

namespace tame::redis::detail {

struct semaphore_scripts {
    script acquire;
    /// Also a cancelled waiter's leave: drops the id from the queue and gives
    /// back what it holds.
    script release;
    script renew;
    script set_capacity;
    script stats;

    /// The scripts, made (and hashed) once.
    static const semaphore_scripts& get();
};

/// The KEYS of every script for the semaphore `name`: holders, owners, queue,
/// beats, wants, meta, and the channel grants are published on.
command semaphore_keys(const std::string& name);

} // namespace tame::redis::detail
