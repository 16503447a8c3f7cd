#pragma once

#include <tame/error.hpp>
#include <tame/http/metrics.hpp>
#include <tame/http/router.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <utility>

namespace samples {

namespace asio = boost::asio;
namespace http = tame::http;
using tame::error_code;

/// One sample service as a server hosts it: its routes, its metrics and the
/// background work it must stop when the server has stopped. The hosts (the
/// mains, and the tests) put one or several on a server.
class sample_service {
  public:
    using executor_type = asio::any_io_executor;

    virtual ~sample_service() = default;
    sample_service(const sample_service&) = delete;
    sample_service& operator=(const sample_service&) = delete;

    /// The executor of the service's own work, and of async_stop()'s handler
    /// when it names none.
    executor_type get_executor() const noexcept { return executor_; }

    /// Adds the service's endpoints.
    virtual void add_routes(http::router& routes) = 0;

    /// Adds the service's gauges and counters to /metrics.
    virtual void add_metrics(http::metrics_registry& metrics) = 0;

    /// Called once the server listens on `endpoint` (the diagnosis service
    /// calls its embedded upstream there).
    virtual void on_started(const asio::ip::tcp::endpoint& endpoint) { (void)endpoint; }

    /// Stops the work the service runs on its own (jobs, pool tasks): call it
    /// once the server has stopped taking and answering requests. The service
    /// may be destroyed once it has completed.
    ///
    /// Completion signature: `void(error_code)`, once that work has ended. The
    /// three samples always succeed; a service reports there a stop it could not
    /// finish.
    ///
    /// Cancellation: none. A stop cannot be left half done, so the handler's
    /// cancellation slot is not used; the operation completes when the work has
    /// ended, whatever is emitted.
    ///
    /// The handler runs on its associated executor (by default the service's),
    /// never inside this call, and counts as outstanding work there until then.
    ///
    /// Thread safety: may be called from any thread; calling it again waits for
    /// the same end.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_stop(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) {
                auto work = asio::prefer(asio::get_associated_executor(handler, executor_),
                                         asio::execution::outstanding_work.tracked);
                // The service may end its work on any thread, even inside
                // do_async_stop(). Posting through the service's executor keeps
                // the promise; Asio hands the handler on to its own executor.
                do_async_stop(asio::any_completion_handler<void(error_code)>{
                    [handler = std::move(handler), work = std::move(work),
                     ex = executor_](error_code ec) mutable {
                        asio::post(ex, asio::append(std::move(handler), ec));
                    }});
            },
            token);
    }

  protected:
    explicit sample_service(executor_type ex) : executor_{std::move(ex)} {}

    /// Asks the service's own work to end, and calls `done` once it has ended:
    /// exactly once, from any thread, perhaps inside this call (async_stop()
    /// brings the completion to the caller's executor). Thread-safe.
    virtual void do_async_stop(asio::any_completion_handler<void(error_code)> done) = 0;

  private:
    executor_type executor_;
};

} // namespace samples
