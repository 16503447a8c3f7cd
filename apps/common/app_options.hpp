#pragma once

#include <tame/http/server_options.hpp>
#include <tame/redis/url.hpp>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/value_semantic.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace samples {

/// The flags every sample app takes: where to listen, how many threads, how
/// long a shutdown lets requests finish, and whether to log each request.
struct app_options {
    std::string address = "127.0.0.1";
    std::uint16_t port = 8080;
    /// io_context threads; 0 picks the hardware threads. With 1, the server and
    /// the pools skip their strands (`single_threaded`).
    unsigned threads = 0;
    /// How long SIGINT/SIGTERM lets requests in flight finish before they are
    /// cancelled.
    std::chrono::milliseconds drain{10000};
    /// Requests handled at once; more get 503 + Retry-After.
    std::size_t max_in_flight = tame::http::server_options{}.max_in_flight;
    /// Connections open at once; more wait in the listen backlog.
    std::size_t max_connections = tame::http::server_options{}.max_connections;
    /// The CPU usage, in thousandths of the io threads' cores, from which the
    /// server sheds load adaptively (--shed-cpu, go-zero's 900); 0: no shedding.
    unsigned shed_cpu = 900;
    /// No access log.
    bool quiet = false;
    /// The Redis that replicas share (--redis): limits and jobs live there.
    /// None: everything stays in this process, as without replicas.
    std::optional<tame::redis::url> redis;
    /// The lease of what this replica holds in Redis (--lease-ms): a replica
    /// that dies gives it back within this long.
    std::chrono::milliseconds lease{10000};
    /// This replica's name in Redis (--instance): by default host:pid.
    std::string instance = default_instance();

    /// host:pid of this process.
    static std::string default_instance();

    /// The threads to run, `threads` resolved.
    unsigned thread_count() const noexcept;
    /// Whether one thread runs everything.
    bool single_threaded() const noexcept { return thread_count() == 1; }
    /// The server options these flags stand for.
    tame::http::server_options server_options() const;
};

/// A description titled `title`, holding --help and the common flags bound to
/// `app`; each service adds its own.
boost::program_options::options_description describe_app_options(const std::string& title,
                                                                 app_options& app);

/// A flag of whole milliseconds from 0 to `max_ms`, stored into `target`.
boost::program_options::typed_value<long>* milliseconds_flag(std::chrono::milliseconds& target,
                                                             const char* flag,
                                                             long max_ms = 24L * 3600 * 1000);

/// A flag of whole seconds from 0 to `max_s`, stored into `target`.
boost::program_options::typed_value<long>* seconds_flag(std::chrono::seconds& target,
                                                        const char* flag, long max_s);

/// A count flag from `min` to `max`, stored into `target`.
boost::program_options::typed_value<std::size_t>* count_flag(std::size_t& target, const char* flag,
                                                             std::size_t min, std::size_t max);

/// Parses the command line into the bound options. Returns an exit code when
/// the program should stop at once: 0 after --help (printed on stdout), 2 after
/// a bad flag (the reason and a hint on stderr).
std::optional<int>
parse_command_line(int argc, const char* const* argv,
                   const boost::program_options::options_description& description);

} // namespace samples
