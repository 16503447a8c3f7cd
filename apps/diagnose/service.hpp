#pragma once

#include "common/sample_service.hpp"

#include <tame/adaptive_limit.hpp>
#include <tame/breaker.hpp>
#include <tame/time_source.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/program_options/options_description.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace samples {

/// tame-diagnose's settings.
struct diagnose_options {
    /// The diagnosis service's URL; empty: the app's own /upstream/diagnoses.
    std::string upstream;
    /// How long GET /diagnose waits for the upstream (context.WithTimeout).
    std::chrono::milliseconds deadline{2000};
    /// How long the embedded upstream takes to answer.
    std::chrono::milliseconds upstream_delay{3000};
    /// Where the deadline and the embedded upstream's delay are measured and
    /// waited for: the steady clock, unless a test gives a tame::manual_time.
    std::shared_ptr<tame::time_source> time = tame::steady_time();
    /// Calls the upstream through a tame::breaker (--breaker on|off): when it
    /// keeps failing or timing out, /diagnose answers 503 with Retry-After at
    /// once instead of waiting the deadline, and lets a probe through now and
    /// then.
    bool breaker = true;
    /// How the limit on concurrent upstream calls moves (--upstream-limit):
    /// "gradient2" (with latency), "aimd" (with timeouts and failures), or
    /// "off" (no limit). A call over the limit is answered 503 with
    /// Retry-After at once.
    std::string upstream_limit = "gradient2";
    /// The least and the most the limit may be (--upstream-limit-min, -max;
    /// Netflix's 20 and 200). It starts at 20, within them.
    std::size_t upstream_limit_min = 20;
    std::size_t upstream_limit_max = 200;
};

/// Adds tame-diagnose's flags, bound to `options`.
void add_diagnose_options(boost::program_options::options_description& description,
                          diagnose_options& options);

/// The longest `symptoms` /diagnose takes (decoded); longer is a 400. Encoded
/// for the upstream it stays within a default server's 8 KiB header limit.
inline constexpr std::size_t max_symptoms_length = 2000;

/// GET /diagnose?symptoms=…: calls a slow upstream over real HTTP under a
/// deadline, as the source article's third service does with
/// context.WithTimeout and select, except that at the deadline the call is
/// over: a tame::cancel_source emitted at the deadline cancels the client
/// operation, which closes its socket, and tame::with_cancellation waits for it
/// to end before the handler answers 408.
///
/// Also serves the embedded upstream, GET /upstream/diagnoses, which answers
/// after `upstream_delay` and counts the calls whose client hung up first.
class diagnose_service : public sample_service {
  public:
    diagnose_service(const boost::asio::any_io_executor& ex, diagnose_options options);

    void add_routes(http::router& routes) override;
    void add_metrics(http::metrics_registry& metrics) override;
    /// With no --upstream, the upstream is this server's /upstream/diagnoses.
    void on_started(const boost::asio::ip::tcp::endpoint& endpoint) override;

    /// The URL called, once started.
    std::string upstream() const;

    /// Calls of the embedded upstream whose caller went away before the answer.
    std::uint64_t upstream_abandoned() const noexcept { return embedded_abandoned_.load(); }

  private:
    /// Nothing runs outside requests: done at once.
    void do_async_stop(asio::any_completion_handler<void(error_code)> done) override
    {
        std::move(done)(error_code{});
    }

    boost::asio::awaitable<http::response> diagnose(http::request_context& ctx);
    boost::asio::awaitable<http::response> embedded_upstream(http::request_context& ctx);

    diagnose_options options_;
    std::shared_ptr<tame::time_source> time_;
    /// Null with --breaker off.
    std::unique_ptr<tame::breaker> breaker_;
    /// Null with --upstream-limit off.
    std::unique_ptr<tame::adaptive_limit> limit_;
    std::atomic<std::uint64_t> limit_refused_{0};
    mutable std::mutex mutex_;
    std::string upstream_;

    std::atomic<std::uint64_t> answered_{0};
    std::atomic<std::uint64_t> timed_out_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> embedded_abandoned_{0};
};

} // namespace samples
