// Fuzz target: the input is a program of operations on one async_semaphore and
// one task_pool, run on an io_context driven by hand (one thread, so every run
// is reproducible). After each step it checks what a user relies on:
//   - permits are conserved: free + held == capacity (less what a shrink has
//     yet to absorb), and the queue's head never fits into the free permits;
//   - the pool never runs more tasks than its capacity, beyond tasks left over
//     from before a shrink, and its counters add up;
//   - every operation completes exactly once, and at the end every one has.
// A broken invariant aborts with the step that broke it.

#include "fuzz_input.hpp"

#include <tame/semaphore.hpp>
#include <tame/task_pool.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <stdexcept>
#include <vector>

namespace {

namespace asio = boost::asio;
using boost::system::error_code;

constexpr std::size_t max_capacity = 8;

[[noreturn]] void broken(const char* what, std::size_t step)
{
    std::fprintf(stderr, "pool_ops_fuzzer: invariant broken at step %zu: %s\n", step, what);
    std::abort();
}

/// One async_acquire() and what became of it.
struct acquire_op {
    std::size_t n = 0;
    asio::cancellation_signal cancel;
    int completions = 0;
    error_code ec;
};

/// One task: it waits on its gate until the program finishes it (or makes it
/// throw), or until the pool cancels it.
struct task_record {
    explicit task_record(asio::io_context& io) : gate{io, asio::steady_timer::time_point::max()} {}

    asio::steady_timer gate;
    bool finish = false;
    bool throw_at_end = false;
    bool started = false;
    bool ended = false;
};

/// A coroutine task that waits on its record's gate; what ends the wait decides
/// how it ends: finished, throwing, or cancelled by the pool.
struct gated_task {
    task_record* task;

    asio::awaitable<void> operator()() const
    {
        task_record* t = task; // the coroutine outlives this callable
        t->started = true;
        try {
            co_await t->gate.async_wait(asio::use_awaitable);
        } catch (const boost::system::system_error&) {
            if (!t->finish) {
                t->ended = true;
                throw; // the pool's cancellation: counted as cancelled
            }
        }
        t->ended = true;
        if (t->throw_at_end) {
            throw std::runtime_error{"task failed"};
        }
    }
};

/// One async_submit() and what became of it.
struct submit_op {
    asio::cancellation_signal cancel;
    int completions = 0;
    error_code ec;
};

class program {
  public:
    explicit program(fuzz_input& in)
        : in_{in}, semaphore_{io_, in.number(1, max_capacity)}, pool_{io_,
                                                                      pool_options(in, failures_)}
    {
        pool_bound_ = pool_.capacity();
    }

    void run()
    {
        while (!in_.empty() && step_ < 4096) {
            ++step_;
            check(do_one(in_.number(0, 16)));
        }
        wind_down();
    }

  private:
    static tame::task_pool_options pool_options(fuzz_input& in, std::shared_ptr<int>& failures)
    {
        tame::task_pool_options options;
        options.capacity = in.number(1, max_capacity);
        const auto waiting = in.number(0, 3);
        options.max_waiting = waiting == 3 ? tame::task_pool_options::unlimited : waiting;
        options.single_threaded = true;
        failures = std::make_shared<int>(0);
        options.on_exception = [failures](std::exception_ptr) { ++*failures; };
        return options;
    }

    /// Runs one operation; whether it left the program quiescent (a full poll:
    /// every handler that was ready has run).
    bool do_one(std::size_t op)
    {
        switch (op) {
        case 0:
            acquire();
            break;
        case 1:
            cancel(acquires_, in_.number(0, 255));
            break;
        case 2:
            release(in_.number(0, 255));
            break;
        case 3:
            try_acquire();
            break;
        case 4:
            semaphore_.set_capacity(in_.number(1, max_capacity));
            break;
        case 5:
            if (in_.number(0, 7) == 0)
                semaphore_.close();
            break;
        case 6:
            submit();
            break;
        case 7:
            cancel(submits_, in_.number(0, 255));
            break;
        case 8:
            try_submit();
            break;
        case 9:
            end_task(in_.number(0, 255), false);
            break;
        case 10:
            end_task(in_.number(0, 255), true);
            break;
        case 11:
            resize(in_.number(1, max_capacity));
            break;
        case 12:
            if (in_.number(0, 7) == 0)
                pool_.close();
            break;
        case 13:
            pool_.cancel_all();
            break;
        case 14:
            restart_if_stopped();
            io_.poll_one();
            break;
        default:
            poll();
            return true;
        }
        return false;
    }

    void poll()
    {
        restart_if_stopped();
        io_.poll();
    }

    void restart_if_stopped()
    {
        if (io_.stopped()) {
            io_.restart(); // out of work for a moment, not for good
        }
    }

    // --- the semaphore ---

    void acquire()
    {
        auto op = std::make_unique<acquire_op>();
        op->n = in_.number(1, max_capacity + 1); // capacity + 1 must fail, not wait
        acquire_op* raw = op.get();
        acquires_.push_back(std::move(op));
        semaphore_.async_acquire(
            raw->n, asio::bind_cancellation_slot(
                        raw->cancel.slot(), [this, raw](error_code ec, tame::permit p) {
                            if (++raw->completions != 1) {
                                broken("an acquire completed twice", step_);
                            }
                            raw->ec = ec;
                            if (!ec && !p) {
                                broken("an acquire succeeded with an empty permit", step_);
                            }
                            if (p) {
                                held_.push_back(std::move(p));
                            }
                        }));
    }

    void try_acquire()
    {
        if (auto p = semaphore_.try_acquire(in_.number(0, max_capacity))) {
            held_.push_back(std::move(p));
        }
    }

    void release(std::size_t which)
    {
        if (!held_.empty()) {
            held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(which % held_.size()));
        }
    }

    template <class Op>
    void cancel(std::vector<std::unique_ptr<Op>>& ops, std::size_t which)
    {
        if (!ops.empty()) {
            static constexpr asio::cancellation_type kinds[] = {asio::cancellation_type::terminal,
                                                                asio::cancellation_type::partial,
                                                                asio::cancellation_type::total};
            ops[which % ops.size()]->cancel.emit(kinds[which % 3]);
        }
    }

    std::size_t held_permits() const
    {
        std::size_t n = 0;
        for (const auto& p : held_) {
            n += p.count();
        }
        return n;
    }

    /// Acquires whose handler has not run; after a poll, exactly the waiters.
    std::vector<const acquire_op*> pending_acquires() const
    {
        std::vector<const acquire_op*> pending;
        for (const auto& op : acquires_) {
            if (op->completions == 0) {
                pending.push_back(op.get());
            }
        }
        return pending;
    }

    // --- the pool ---

    void submit()
    {
        auto op = std::make_unique<submit_op>();
        submit_op* raw = op.get();
        submits_.push_back(std::move(op));
        pool_.async_submit(
            make_task(),
            asio::bind_cancellation_slot(raw->cancel.slot(), [this, raw](error_code ec) {
                if (++raw->completions != 1) {
                    broken("a submission completed twice", step_);
                }
                raw->ec = ec;
                if (ec == tame::errc::closed || ec == tame::errc::pool_overloaded) {
                    ++refused_;
                }
            }));
    }

    void try_submit()
    {
        if (pool_.try_submit(make_task())) {
            ++refused_;
        }
    }

    gated_task make_task()
    {
        tasks_.push_back(std::make_unique<task_record>(io_));
        return gated_task{tasks_.back().get()};
    }

    void end_task(std::size_t which, bool throwing)
    {
        std::vector<task_record*> waiting;
        for (const auto& t : tasks_) {
            if (t->started && !t->ended && !t->finish) {
                waiting.push_back(t.get());
            }
        }
        if (!waiting.empty()) {
            task_record* t = waiting[which % waiting.size()];
            t->finish = true;
            t->throw_at_end = throwing;
            t->gate.cancel();
        }
    }

    void resize(std::size_t capacity)
    {
        // Tasks running now go on past a shrink, and so do submissions already
        // granted a slot whose task has not started yet (as a semaphore's held
        // permits stay valid); no other task may start above the new capacity.
        std::size_t submitting = 0;
        for (const auto& op : submits_) {
            submitting += op->completions == 0 ? 1 : 0;
        }
        pool_bound_ = std::max(capacity, pool_.running() + submitting);
        pool_.resize(capacity);
    }

    // --- the invariants ---

    /// Between polls, handlers may be queued with permits or slots that the
    /// program has not seen yet: only the bounds hold then. The exact balance
    /// holds once every ready handler has run (`quiescent`).
    void check(bool quiescent)
    {
        check_semaphore(quiescent);
        check_pool(quiescent);
    }

    void check_semaphore(bool quiescent)
    {
        const std::size_t capacity = semaphore_.capacity();
        const std::size_t free = semaphore_.available();
        if (free > capacity) {
            broken("more free permits than the capacity", step_);
        }
        if (!quiescent) {
            return;
        }
        const std::size_t held = held_permits();
        const std::size_t expected_free = held >= capacity ? 0 : capacity - held;
        if (free != expected_free) {
            broken("permits not conserved: free + held != capacity", step_);
        }
        const auto pending = pending_acquires();
        if (pending.size() != semaphore_.waiting()) {
            broken("an acquire neither completed nor waiting", step_);
        }
        if (!pending.empty() && pending.front()->n <= free) {
            broken("the queue's head waits although its permits are free", step_);
        }
        if (!pending.empty() && semaphore_.is_closed()) {
            broken("an acquire waits on a closed semaphore", step_);
        }
    }

    void check_pool(bool quiescent)
    {
        const std::size_t running = pool_.running();
        if (running > pool_bound_) {
            broken("more tasks running than the pool's capacity", step_);
        }
        if (!quiescent) {
            return;
        }
        // Every granted task has started now: what runs above the capacity is
        // left over from before a shrink, and can only go down.
        pool_bound_ = std::max(pool_.capacity(), running);
        std::size_t live = 0;
        for (const auto& t : tasks_) {
            live += t->started && !t->ended ? 1 : 0;
        }
        const auto stats = pool_.stats();
        if (live != running || stats.running != running) {
            broken("the pool's running count disagrees with the tasks alive", step_);
        }
        if (stats.submitted != stats.completed + stats.failed + stats.cancelled + stats.running) {
            broken("pool counters do not add up: submitted != ended + running", step_);
        }
        if (stats.failed != static_cast<std::uint64_t>(*failures_)) {
            broken("a task's exception did not reach on_exception exactly once", step_);
        }
        if (stats.rejected != refused_) {
            broken("the pool's rejected count disagrees with the refusals seen", step_);
        }
    }

    /// Closes both, releases every permit and lets every task end; then every
    /// operation must have completed exactly once.
    void wind_down()
    {
        semaphore_.close();
        held_.clear();
        pool_.close();
        for (int round = 0; round < 4; ++round) {
            pool_.cancel_all(); // a task admitted before close() starts, then stops
            poll();
        }
        ++step_;
        for (const auto& op : acquires_) {
            if (op->completions != 1) {
                broken("an acquire never completed", step_);
            }
        }
        for (const auto& op : submits_) {
            if (op->completions != 1) {
                broken("a submission never completed", step_);
            }
        }
        for (const auto& t : tasks_) {
            if (t->started && !t->ended) {
                broken("a task never ended", step_);
            }
        }
        held_.clear();
        check_semaphore(true);
        check_pool(true);
        if (pool_.running() != 0 || semaphore_.available() != semaphore_.capacity()) {
            broken("work left after the wind-down", step_);
        }
    }

    fuzz_input& in_;
    std::size_t step_ = 0;
    asio::io_context io_{1};
    std::shared_ptr<int> failures_;
    tame::async_semaphore semaphore_;
    std::vector<std::unique_ptr<acquire_op>> acquires_;
    std::vector<tame::permit> held_;
    std::vector<std::unique_ptr<task_record>> tasks_;
    std::vector<std::unique_ptr<submit_op>> submits_;
    std::uint64_t refused_ = 0;
    std::size_t pool_bound_ = 0;
    tame::task_pool pool_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz_input in{data, size};
    program{in}.run();
    return 0;
}
