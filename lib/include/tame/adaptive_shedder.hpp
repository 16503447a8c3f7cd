#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace tame {
namespace detail {
class cpu_meter;
}

/// tame::adaptive_shedder's parameters; the defaults are go-zero's
/// (core/load/adaptiveshedder.go).
struct shedder_options {
    /// CPU usage, in thousandths of the cores this process may use, from which
    /// the server counts as overloaded.
    unsigned cpu_threshold = 900;
    /// The rolling window of pass counts and response times, and its buckets
    /// (5 s in 50 buckets of 100 ms).
    std::chrono::milliseconds window{5000};
    std::size_t buckets = 50;
    /// How long after the CPU was last seen over the threshold shedding may
    /// go on, once something was shed.
    std::chrono::milliseconds cool_off{1000};
    /// The CPU usage in thousandths; empty: this process's CPU time over the
    /// cores it may use (its affinity mask, and its cgroup's cpu.max quota),
    /// sampled every 250 ms and smoothed (new = old * 0.95 + sample * 0.05, as
    /// go-zero does). A test gives the reading it wants.
    std::function<unsigned()> cpu_usage;
    /// The cores that 1000 thousandths stand for, when the shedder measures
    /// the CPU itself; 0: the cores this process may use. A server whose
    /// io_context runs on fewer threads than that saturates at its thread
    /// count, and should say so here.
    double cores = 0;
    /// The clock of the windows and the cool-off (the steady clock when empty).
    std::function<std::chrono::steady_clock::time_point()> clock;
};

/// What an adaptive_shedder knows now, for metrics and tests.
struct shedder_stats {
    unsigned cpu_usage = 0;
    /// Requests let through and not finished yet, and its moving average.
    std::int64_t in_flight = 0;
    double average_in_flight = 0;
    /// The most requests passed in one bucket of the window (at least 1).
    std::int64_t max_pass = 1;
    /// The lowest mean response time of a bucket of the window, in ms (1000
    /// when the window is empty).
    double min_rt_ms = 1000;
    /// Little's law: max_pass per second * min_rt: the requests in flight the
    /// server has shown it can carry.
    double max_flight = 1;
    /// Requests refused since construction.
    std::uint64_t shed = 0;
};

/// Load shedding that follows the server's own capacity, as go-zero's adaptive
/// shedder does. A request is refused when both
///
/// - the CPU usage is at or over the threshold, or was within the cool-off
///   period and a request was refused since (the server is still hot); and
/// - the requests in flight, and their moving average, exceed what the server
///   has shown it can carry: max_flight = the most requests passed per second
///   over the window x the lowest mean response time (Little's law), scaled
///   down as the CPU nears 100% by (1000 - cpu) / (1000 - threshold), to no
///   less than a tenth.
///
/// So a busy CPU alone sheds nothing while requests are served as fast as ever,
/// and a queue alone sheds nothing while the CPU has room.
///
/// allow() returns a ticket: pass() when the request was served (its response
/// time and pass are counted), fail() when it failed (only the in-flight count
/// drops; destroyed unmarked, it fails). An empty ticket means shed.
///
/// Thread safety: every member may be called from any thread. The shedder
/// must outlive its tickets.
class adaptive_shedder {
  public:
    class ticket {
      public:
        ticket() noexcept = default;
        ticket(ticket&& other) noexcept;
        ticket& operator=(ticket&& other) noexcept;
        ticket(const ticket&) = delete;
        ticket& operator=(const ticket&) = delete;
        /// Unmarked: fail().
        ~ticket() { fail(); }

        /// Whether the request may go ahead (and has not been marked yet).
        explicit operator bool() const noexcept { return owner_ != nullptr; }

        /// The request was served: its response time counts.
        void pass() noexcept;
        /// The request failed: it leaves the in-flight count only.
        void fail() noexcept;

      private:
        friend class adaptive_shedder;
        ticket(adaptive_shedder* owner, std::chrono::steady_clock::time_point start) noexcept
            : owner_{owner}, start_{start}
        {
        }

        adaptive_shedder* owner_ = nullptr;
        std::chrono::steady_clock::time_point start_{};
    };

    explicit adaptive_shedder(shedder_options options = {});
    ~adaptive_shedder();
    adaptive_shedder(const adaptive_shedder&) = delete;
    adaptive_shedder& operator=(const adaptive_shedder&) = delete;

    /// Decides one request: a ticket that lets it in, or an empty one.
    ticket allow();

    shedder_stats stats() const;
    const shedder_options& options() const noexcept { return options_; }

    /// The cores this process may use: its affinity mask, capped by its
    /// cgroup's (v2) cpu.max quota.
    static double usable_cores();

  private:
    class rolling_window;
    using time_point = std::chrono::steady_clock::time_point;

    time_point now() const;
    unsigned cpu() const;
    bool should_drop(time_point now);
    bool still_hot(time_point now);
    std::int64_t max_pass(time_point now) const;
    double min_rt_ms(time_point now) const;
    double max_flight(time_point now) const;
    void leave(bool passed, time_point start) noexcept;

    shedder_options options_;
    double buckets_per_ms_;
    std::unique_ptr<rolling_window> passes_;
    std::unique_ptr<rolling_window> response_times_;
    std::unique_ptr<detail::cpu_meter> meter_; // null when options_.cpu_usage is given
    std::atomic<std::int64_t> in_flight_{0};
    mutable std::mutex average_mutex_;
    double average_in_flight_ = 0;
    std::atomic<std::int64_t> overload_time_; // clock ticks (ns) when the CPU was last over
    std::atomic<bool> dropped_recently_{false};
    std::atomic<std::uint64_t> shed_{0};
};

} // namespace tame
