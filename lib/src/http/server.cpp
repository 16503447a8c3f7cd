#include <tame/http/server.hpp>

#include "connection.hpp"

#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace tame::http {
namespace detail {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The sweeper visits every connection ten times per shortest timeout, so a
// timeout fires at most a tenth late; never more often than every millisecond,
// and at least every 100 ms, which bounds how long a running handler goes
// before it is watched for its client leaving.
clock::duration sweep_interval_for(const server_options& o)
{
    std::chrono::milliseconds shortest{1000};
    for (auto t :
         {o.header_timeout, o.idle_timeout, o.body_timeout, o.write_timeout, o.request_timeout}) {
        if (t.count() > 0) {
            shortest = std::min(shortest, t);
        }
    }
    return std::clamp<clock::duration>(shortest / 10, std::chrono::milliseconds{1},
                                       std::chrono::milliseconds{100});
}

router with_builtin_routes(router routes, const server_options& options, server_state* self)
{
    if (!options.builtin_routes) {
        return routes;
    }
    if (!routes.contains(verb::get, "/healthz")) {
        routes.get("/healthz", [self](request_context&) -> asio::awaitable<response> {
            // A draining server tells load balancers to stop sending work.
            if (self->stage() != server_stage::running) {
                co_return json_response(status::service_unavailable,
                                        boost::json::object{{"status", "draining"}});
            }
            co_return json_response(boost::json::object{{"status", "ok"}});
        });
    }
    if (!routes.contains(verb::get, "/metrics")) {
        routes.get("/metrics", [self](request_context&) -> asio::awaitable<response> {
            response res{status::ok, 11};
            res.set(field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = self->metrics.render();
            co_return res;
        });
    }
    return routes;
}

std::unique_ptr<adaptive_shedder> make_shedder(const std::optional<shedder_options>& options,
                                               const std::shared_ptr<time_source>& time)
{
    if (!options) {
        return nullptr;
    }
    auto o = *options;
    if (!o.clock) {
        o.clock = [time] { return time->now(); };
    }
    return std::make_unique<adaptive_shedder>(std::move(o));
}

std::vector<std::string> route_labels(const router& routes)
{
    std::vector<std::string> labels;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        labels.push_back(routes.label(i));
    }
    return labels;
}

/// Counts one coroutine of the server (the accept loop, a connection) in
/// `active` for as long as its co_spawn completion handler, which holds this,
/// exists: until the coroutine ends, or until the io_context is destroyed with
/// the coroutine still suspended, which destroys the handler without running it.
/// A done() called from the handler would never come after stop() + io.stop()
/// (a second SIGTERM), and a shutdown's wait on `active`, whose handler holds the
/// state, would then keep the state alive from inside the state's own
/// wait_group: a reference cycle that outlived the io_context.
class active_scope {
  public:
    explicit active_scope(std::shared_ptr<server_state> state) : state_{std::move(state)}
    {
        state_->active.add(1);
    }
    active_scope(active_scope&&) noexcept = default;
    active_scope& operator=(active_scope&&) = delete;
    ~active_scope()
    {
        if (state_) {
            state_->active.done();
        }
    }

  private:
    std::shared_ptr<server_state> state_;
};

} // namespace

server_state::server_state(asio::io_context& context, router r, server_options o)
    : io{context}, first_builtin_route{r.size()},
      // The built-in handlers only keep the pointer; they run after construction.
      routes{with_builtin_routes(std::move(r), o, this)}, options{std::move(o)},
      time{options.time ? options.time : steady_time()}, metrics{route_labels(routes)},
      shedder{make_shedder(options.shedding, time)}, control{asio::make_strand(context)},
      acceptor{control}, connection_slots{context.get_executor(),
                                          std::max<std::size_t>(options.max_connections, 1)},
      active{context.get_executor()}, sweep_interval{sweep_interval_for(options)}, shutdown_{
                                                                                       control,
                                                                                       time}
{
    if (shedder) {
        auto* s = shedder.get();
        metrics.add(metric_type::gauge, "tame_http_shedder_cpu_usage",
                    "The CPU usage the load shedder reads, in thousandths of the usable cores.", "",
                    [s] { return static_cast<double>(s->stats().cpu_usage); });
        metrics.add(metric_type::gauge, "tame_http_shedder_max_flight",
                    "Requests in flight the server has shown it carries (Little's law).", "",
                    [s] { return s->stats().max_flight; });
    }
}

void server_state::start()
{
    if (stage() != server_stage::created) {
        throw std::logic_error{"tame::http::server: start() called twice or after a stop"};
    }
    boost::system::error_code bad_address;
    const auto address = asio::ip::make_address(options.address, bad_address);
    if (bad_address) {
        throw boost::system::system_error{bad_address, "tame::http::server: '" + options.address +
                                                           "' is not an IP address"};
    }
    const asio::ip::tcp::endpoint endpoint{address, options.port};
    try {
        acceptor.open(endpoint.protocol());
        acceptor.set_option(asio::socket_base::reuse_address{true});
        acceptor.bind(endpoint);
        acceptor.listen(asio::socket_base::max_listen_connections);
        local_endpoint_ = acceptor.local_endpoint();
    } catch (const boost::system::system_error& e) {
        boost::system::error_code ignored;
        acceptor.close(ignored);
        throw boost::system::system_error{e.code(), "tame::http::server: cannot listen on " +
                                                        options.address + ":" +
                                                        std::to_string(options.port)};
    }
    stage_.store(server_stage::running, std::memory_order_release);

    auto self = shared_from_this();
    asio::co_spawn(
        control, accept_loop(),
        asio::bind_executor(control, [counted = active_scope{self}](std::exception_ptr ep) {
            if (ep) {
                std::fputs("tame::http: the accept loop ended with an exception\n", stderr);
            }
        }));
    asio::co_spawn(control, sweep(), asio::bind_executor(control, [self](std::exception_ptr) {}));
}

asio::awaitable<void> server_state::accept_loop()
{
    auto self = shared_from_this();
    for (;;) {
        auto [slot_ec, slot] = co_await connection_slots.async_acquire(1, use_tuple);
        if (slot_ec || stage() != server_stage::running) {
            break;
        }
        // One thread needs no strands; several need one per connection.
        const auto executor = options.single_threaded
                                  ? asio::any_io_executor{io.get_executor()}
                                  : asio::any_io_executor{asio::make_strand(io)};
        auto [ec, socket] = co_await acceptor.async_accept(executor, use_tuple);
        if (stage() != server_stage::running || !acceptor.is_open()) {
            break;
        }
        if (ec) {
            // Out of descriptors, or a connection reset while queued: wait a little
            // rather than spin, and keep serving.
            asio::steady_timer pause{control, std::chrono::milliseconds{50}};
            co_await pause.async_wait(use_tuple);
            continue;
        }
        auto c = std::make_shared<connection>(self, std::move(socket), executor, std::move(slot));
        c->register_with_server();
        // Counted from here to the end of run(), not to the object's destruction,
        // which late references (a queued watch, a sweep) may delay.
        metrics.add_connection(1);
        c->start([c, self, counted = active_scope{self}](std::exception_ptr ep) {
            if (ep) {
                try {
                    std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "tame::http: a connection ended with: %s\n", e.what());
                } catch (...) {
                    std::fputs("tame::http: a connection ended with an exception\n", stderr);
                }
            }
            self->metrics.add_connection(-1);
        });
    }
}

asio::awaitable<void> server_state::sweep()
{
    auto self = shared_from_this();
    // Sweeping goes on after a stop while connections remain: a response written
    // after the drain period, to a client that does not read, still has its write
    // timeout.
    while (stage() != server_stage::stopped || metrics.connections() > 0) {
        co_await time->async_wait_until(
            control, time->now() + sweep_interval,
            asio::bind_cancellation_slot(sweep_stop_.slot(), use_tuple));
        const auto now = ticks(time->now());
        struct visit {
            std::shared_ptr<connection> c;
            bool late;
            std::uint64_t watch;
        };
        std::vector<visit> visits;
        {
            std::lock_guard lock{mutex_};
            for (auto* c : connections_) {
                const bool late = c->deadline() <= now && c->claim_deadline_post();
                const auto running = c->running_request();
                const bool watch = running != 0 && c->claim_watch(running);
                if (!late && !watch) {
                    continue;
                }
                // A connection whose count has dropped to zero is being destroyed
                // (its destructor waits for this lock); it needs no sweeping.
                if (auto alive = c->weak_from_this().lock()) {
                    visits.push_back({std::move(alive), late, watch ? running : 0});
                }
            }
        }
        // Posted outside the lock: the last reference to a connection may be
        // dropped here, and its destructor takes the lock.
        for (auto& v : visits) {
            if (v.late) {
                asio::post(v.c->executor(), [c = v.c] { c->on_deadline(); });
            }
            if (v.watch != 0) {
                asio::post(v.c->executor(),
                           [c = v.c, request = v.watch] { c->start_watch(request); });
            }
        }
    }
}

bool server_state::try_enter_handler() noexcept
{
    if (static_cast<std::size_t>(metrics.in_flight()) >= options.max_in_flight) {
        return false;
    }
    // The check and the increment are not one step: under a burst on several
    // threads the cap may be passed by the number of threads, no more.
    metrics.add_in_flight(1);
    return true;
}

void server_state::leave_handler() noexcept
{
    metrics.add_in_flight(-1);
}

std::list<connection*>::iterator server_state::add(connection* c)
{
    std::lock_guard lock{mutex_};
    return connections_.insert(connections_.end(), c);
}

void server_state::remove(std::list<connection*>::iterator it)
{
    std::lock_guard lock{mutex_};
    connections_.erase(it);
}

std::vector<std::shared_ptr<connection>> server_state::connections()
{
    std::vector<std::shared_ptr<connection>> alive;
    std::lock_guard lock{mutex_};
    alive.reserve(connections_.size());
    for (auto* c : connections_) {
        if (auto p = c->weak_from_this().lock()) {
            alive.push_back(std::move(p));
        }
    }
    return alive;
}

void server_state::stop_accepting()
{
    boost::system::error_code ignored;
    acceptor.close(ignored);
    connection_slots.close();
}

void server_state::shutdown(clock::duration drain,
                            asio::any_completion_handler<void(std::size_t)> handler)
{
    shutdown_.join(shared_from_this(), tame::detail::clamp_grace(drain), std::move(handler),
                   io.get_executor());
}

void server_state::stop_intake()
{
    auto expected = server_stage::running;
    if (!stage_.compare_exchange_strong(expected, server_stage::draining)) {
        // Never started, or already stopped: nothing drains.
        stage_.store(server_stage::stopped, std::memory_order_release);
    }
    stop_accepting();
    for (auto& c : connections()) {
        asio::post(c->executor(), [c] { c->on_drain(); });
    }
}

void server_state::cancel_work()
{
    stage_.store(server_stage::stopped, std::memory_order_release);
    for (auto& c : connections()) {
        asio::post(c->executor(), [c] { c->on_drain_timeout(); });
    }
}

void server_state::shutdown_finished()
{
    stage_.store(server_stage::stopped, std::memory_order_release);
    sweep_stop_.emit(asio::cancellation_type::terminal);
}

void server_state::stop()
{
    stage_.store(server_stage::stopped, std::memory_order_release);
    auto self = shared_from_this();
    asio::post(control, [self] {
        self->stop_accepting();
        self->sweep_stop_.emit(asio::cancellation_type::terminal);
    });
    // A graceful shutdown under way stops waiting for its drain period.
    shutdown_.end_grace_now(self);
    for (auto& c : connections()) {
        asio::post(c->executor(), [c] { c->on_stop(); });
    }
}

} // namespace detail

server::server(asio::io_context& io, router routes, server_options options)
    : state_{std::make_shared<detail::server_state>(io, std::move(routes), std::move(options))}
{
}

server::~server()
{
    state_->stop();
}

void server::start()
{
    state_->start();
}

asio::ip::tcp::endpoint server::local_endpoint() const
{
    return state_->local_endpoint();
}

metrics_registry& server::metrics() noexcept
{
    return state_->metrics;
}

bool server::is_stopping() const noexcept
{
    return state_->stage() == detail::server_stage::draining ||
           state_->stage() == detail::server_stage::stopped;
}

void server::stop()
{
    state_->stop();
}

void server::start_shutdown(std::chrono::steady_clock::duration drain,
                            asio::any_completion_handler<void(std::size_t)> handler)
{
    state_->shutdown(drain, std::move(handler));
}

void log_to_stderr(const access_entry& e)
{
    char line[512];
    const auto address = e.peer.address().to_string();
    const int n =
        std::snprintf(line, sizeof line, "%s:%u \"%.*s %.*s HTTP/%u.%u\" %u %zu %.3fms\n",
                      address.c_str(), static_cast<unsigned>(e.peer.port()),
                      static_cast<int>(std::min<std::size_t>(e.method.size(), 32)), e.method.data(),
                      static_cast<int>(std::min<std::size_t>(e.target.size(), 256)),
                      e.target.data(), e.version / 10, e.version % 10, e.status, e.bytes,
                      std::chrono::duration<double, std::milli>(e.duration).count());
    // One write per line, so that lines from several threads do not interleave.
    std::fwrite(line, 1, static_cast<std::size_t>(std::min<int>(n, sizeof line - 1)), stderr);
}

} // namespace tame::http
