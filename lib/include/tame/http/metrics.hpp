#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tame::http {

/// Why a request was answered 503 before its handler ran.
enum class shed_reason { max_in_flight, overload };

/// The kinds of metric an application can add, as Prometheus names them.
enum class metric_type { counter, gauge };

/// The server's metrics, and the application's, rendered for `/metrics` in the
/// Prometheus text exposition format (version 0.0.4).
///
/// The server records per route and status code `tame_http_requests_total`, the
/// latency histogram `tame_http_request_duration_seconds`, and the gauges
/// `tame_http_requests_in_flight` and `tame_http_connections`, plus the counters
/// `tame_http_connections_total` and `tame_http_shed_total{reason}` (reason
/// "max_in_flight": over server_options::max_in_flight; "overload": refused by
/// the adaptive shedder, server_options::shedding). Requests
/// that match no route count under route "unmatched", and requests that could not
/// be read (400, 413, 431) under "invalid".
///
/// An application adds its own series with add(), or add_semaphore() and
/// add_task_pool() for tame's objects (read when /metrics is scraped).
///
/// Thread safety: every member may be called from any thread.
class metrics_registry {
  public:
    /// Upper bounds of the latency histogram's buckets, in seconds (+Inf is implied).
    static constexpr std::array<double, 14> latency_buckets{
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

    /// A registry with request series for the routes named `route_labels`.
    explicit metrics_registry(std::vector<std::string> route_labels = {});

    ~metrics_registry();
    metrics_registry(const metrics_registry&) = delete;
    metrics_registry& operator=(const metrics_registry&) = delete;

    /// Adds the series `name{labels} read()`; `labels` is Prometheus label syntax
    /// without braces (`pool="reports"`) or empty. Series of one name share its
    /// help and type. Throws std::invalid_argument for a name Prometheus rejects.
    void add(metric_type type, std::string name, std::string help, std::string labels,
             std::function<double()> read);

    /// Gauges and counters for a tame::async_semaphore, labelled `semaphore="name"`:
    /// capacity, available, waiting, and the acquired, waited and cancelled totals.
    /// The semaphore must outlive the registry's last render().
    template <class Semaphore>
    void add_semaphore(std::string_view name, const Semaphore& sem);

    /// Gauges and counters for a tame::task_pool, labelled `pool="name"`: capacity,
    /// running, waiting, and the submitted, completed, failed, cancelled and rejected
    /// totals. The pool must outlive the registry's last render().
    template <class Pool>
    void add_task_pool(std::string_view name, const Pool& pool);

    /// The index under which requests that matched no route are recorded.
    std::size_t unmatched_route() const noexcept { return routes_.size() - 2; }

    /// The index under which requests that could not be read are recorded.
    std::size_t invalid_route() const noexcept { return routes_.size() - 1; }

    /// Records one answered request.
    void record_request(std::size_t route, unsigned status,
                        std::chrono::nanoseconds duration) noexcept;

    /// Records a request refused before its handler ran.
    void record_shed(shed_reason why) noexcept
    {
        shed_[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
    }

    /// Requests refused so far for `why`.
    std::uint64_t shed(shed_reason why) const noexcept
    {
        return shed_[static_cast<std::size_t>(why)].load(std::memory_order_relaxed);
    }

    /// Counts a request entering (+1) or leaving (-1) its handler.
    void add_in_flight(long delta) noexcept
    {
        in_flight_.fetch_add(delta, std::memory_order_relaxed);
    }

    /// Counts a connection opening (+1) or closing (-1).
    void add_connection(long delta) noexcept;

    /// Requests in their handler now.
    long in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }

    /// Connections open now.
    long connections() const noexcept { return connections_.load(std::memory_order_relaxed); }

    /// Requests recorded for `route` with `status` so far.
    std::uint64_t requests(std::size_t route, unsigned status) const noexcept;

    /// Everything, in the Prometheus text format.
    std::string render() const;

  private:
    struct route_series {
        std::string label;
        std::array<std::atomic<std::uint64_t>, 600> by_status{};
        std::array<std::atomic<std::uint64_t>, latency_buckets.size() + 1> buckets{};
        std::atomic<std::uint64_t> duration_ns{0};
    };
    struct app_series;

    std::vector<std::unique_ptr<route_series>> routes_;
    std::array<std::int64_t, latency_buckets.size()> bucket_bounds_ns_{};
    std::atomic<long> in_flight_{0};
    std::atomic<long> connections_{0};
    std::atomic<std::uint64_t> connections_total_{0};
    std::array<std::atomic<std::uint64_t>, 2> shed_{};
    mutable std::mutex app_mutex_;
    std::vector<app_series> app_;
};

template <class Semaphore>
void metrics_registry::add_semaphore(std::string_view name, const Semaphore& sem)
{
    const std::string labels = "semaphore=\"" + std::string{name} + "\"";
    const auto* s = &sem;
    add(metric_type::gauge, "tame_semaphore_capacity", "Permits a semaphore has.", labels,
        [s] { return static_cast<double>(s->capacity()); });
    add(metric_type::gauge, "tame_semaphore_available", "Permits free now.", labels,
        [s] { return static_cast<double>(s->available()); });
    add(metric_type::gauge, "tame_semaphore_waiting", "Acquires waiting now.", labels,
        [s] { return static_cast<double>(s->waiting()); });
    add(metric_type::counter, "tame_semaphore_acquired_total", "Acquisitions granted.", labels,
        [s] { return static_cast<double>(s->stats().acquired); });
    add(metric_type::counter, "tame_semaphore_waited_total", "Acquisitions that had to wait.",
        labels, [s] { return static_cast<double>(s->stats().waited); });
    add(metric_type::counter, "tame_semaphore_cancelled_total", "Waiting acquires cancelled.",
        labels, [s] { return static_cast<double>(s->stats().cancelled); });
}

template <class Pool>
void metrics_registry::add_task_pool(std::string_view name, const Pool& pool)
{
    const std::string labels = "pool=\"" + std::string{name} + "\"";
    const auto* p = &pool;
    auto series = [&](metric_type type, const char* metric, const char* help, auto field) {
        add(type, metric, help, labels,
            [p, field] { return static_cast<double>(p->stats().*field); });
    };
    using stats = decltype(pool.stats());
    series(metric_type::gauge, "tame_pool_capacity", "Tasks a pool runs at once.",
           &stats::capacity);
    series(metric_type::gauge, "tame_pool_running", "Tasks running now.", &stats::running);
    series(metric_type::gauge, "tame_pool_waiting", "Submitters waiting for a slot now.",
           &stats::waiting);
    series(metric_type::counter, "tame_pool_submitted_total", "Tasks accepted.", &stats::submitted);
    series(metric_type::counter, "tame_pool_completed_total", "Tasks that returned.",
           &stats::completed);
    series(metric_type::counter, "tame_pool_failed_total", "Tasks that threw.", &stats::failed);
    series(metric_type::counter, "tame_pool_cancelled_total", "Tasks cancelled by the pool.",
           &stats::cancelled);
    series(metric_type::counter, "tame_pool_rejected_total", "Submissions refused.",
           &stats::rejected);
}

} // namespace tame::http
