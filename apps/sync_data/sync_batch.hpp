#pragma once

#include "sync_data/concurrency_meter.hpp"
#include "sync_data/task_slots.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>

namespace samples {

/// What one data-sync batch runs: `tasks` jobs of `task_time` each, at most
/// `concurrency` at once.
struct sync_batch_spec {
    std::size_t tasks = 0;
    std::size_t concurrency = 1;
    std::chrono::milliseconds task_time{0};
};

/// How far a batch has got; shared by its tasks and whoever reports on it.
struct sync_progress {
    std::atomic<std::size_t> done{0};
    concurrency_meter meter;
};

/// Runs a batch as the source article's first service does, the tame way: a
/// with_task_group() limited to `spec.concurrency` (Go's errgroup with
/// SetLimit, or the buffered-channel semaphore with a WaitGroup) spawns one
/// task per job, each a timer standing for a call to a validation service.
/// Every task also holds a slot of `service_slots`, the service-wide cap on
/// running tasks (shared by the replicas with --redis: a task whose shared
/// slot's lease is lost stops, failing the batch, rather than run beyond the
/// global limit).
///
/// Cancelling the calling coroutine cancels the tasks still running and starts
/// no more; the batch then throws operation_aborted, once every task has
/// ended: none outlives it. A task that fails (its permit refused because
/// `service_slots` was closed) cancels the batch the same way, which then
/// throws that failure. Tasks run on strands of `ex`; the calling coroutine's
/// executor must run handlers one at a time (a strand, or an io_context run by
/// one thread).
boost::asio::awaitable<void> run_sync_batch(boost::asio::any_io_executor ex, sync_batch_spec spec,
                                            std::shared_ptr<sync_progress> progress,
                                            task_slots& service_slots);

} // namespace samples
