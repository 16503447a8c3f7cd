#include "common/app_options.hpp"

#include <boost/program_options/parsers.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/program_options/variables_map.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <stdexcept>
#include <thread>

namespace po = boost::program_options;

namespace samples {

unsigned app_options::thread_count() const noexcept
{
    return threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
}

std::string app_options::default_instance()
{
    std::array<char, 256> host{};
    if (::gethostname(host.data(), host.size() - 1) != 0) {
        host = {'h', 'o', 's', 't'};
    }
    return std::string{host.data()} + ":" + std::to_string(::getpid());
}

tame::http::server_options app_options::server_options() const
{
    tame::http::server_options options;
    options.address = address;
    options.port = port;
    options.single_threaded = single_threaded();
    options.max_in_flight = max_in_flight;
    options.max_connections = max_connections;
    if (shed_cpu > 0) {
        tame::shedder_options shedding;
        shedding.cpu_threshold = shed_cpu;
        // The io threads are all the CPU the server can use.
        shedding.cores = std::min<double>(thread_count(), tame::adaptive_shedder::usable_cores());
        options.shedding = shedding;
    }
    if (quiet) {
        options.access_log = {};
    }
    return options;
}

namespace {

template <class T>
void check_range(const char* flag, T value, T min, T max)
{
    if (value < min || value > max) {
        throw po::error{std::string{"--"} + flag + " must be from " + std::to_string(min) + " to " +
                        std::to_string(max) + ", not " + std::to_string(value)};
    }
}

} // namespace

po::typed_value<long>* milliseconds_flag(std::chrono::milliseconds& target, const char* flag,
                                         long max_ms)
{
    return po::value<long>()
        ->default_value(target.count())
        ->notifier([&target, flag, max_ms](long ms) {
            check_range(flag, ms, 0L, max_ms);
            target = std::chrono::milliseconds{ms};
        });
}

po::typed_value<long>* seconds_flag(std::chrono::seconds& target, const char* flag, long max_s)
{
    return po::value<long>()
        ->default_value(target.count())
        ->notifier([&target, flag, max_s](long s) {
            check_range(flag, s, 0L, max_s);
            target = std::chrono::seconds{s};
        });
}

po::typed_value<std::size_t>* count_flag(std::size_t& target, const char* flag, std::size_t min,
                                         std::size_t max)
{
    return po::value(&target)->default_value(target)->notifier(
        [flag, min, max](std::size_t n) { check_range(flag, n, min, max); });
}

po::options_description describe_app_options(const std::string& title, app_options& app)
{
    po::options_description description{title};
    description.add_options()("help,h", "show this help and exit")(
        "address", po::value(&app.address)->default_value(app.address), "address to listen on")(
        "port", po::value<long>()->default_value(app.port)->notifier([&app](long port) {
            check_range("port", port, 0L, 65535L);
            app.port = static_cast<std::uint16_t>(port);
        }),
        "port to listen on (0: any free port)")(
        "threads", po::value<long>()->default_value(app.threads)->notifier([&app](long threads) {
            check_range("threads", threads, 0L, 1024L);
            app.threads = static_cast<unsigned>(threads);
        }),
        "io threads (0: one per hardware thread)")(
        "drain-ms", milliseconds_flag(app.drain, "drain-ms"),
        "on SIGINT/SIGTERM, how long requests in flight may finish before they are cancelled")(
        "max-in-flight", count_flag(app.max_in_flight, "max-in-flight", 1, std::size_t{1} << 30),
        "requests handled at once; more are answered 503 with Retry-After")(
        "max-connections",
        count_flag(app.max_connections, "max-connections", 1, std::size_t{1} << 30),
        "connections open at once; more wait in the listen backlog")(
        "shed-cpu", po::value<long>()->default_value(app.shed_cpu)->notifier([&app](long permille) {
            check_range("shed-cpu", permille, 0L, 1000L);
            app.shed_cpu = static_cast<unsigned>(permille);
        }),
        "shed requests (503) when the CPU is over this many thousandths of the io threads and "
        "more are in flight than the server has carried; 0: never")(
        "quiet", po::bool_switch(&app.quiet), "no access log")(
        "redis", po::value<std::string>()->notifier([&app](const std::string& text) {
            tame::error_code ec;
            app.redis = tame::redis::parse_url(text, ec);
            if (ec) {
                throw po::error{"--redis must be redis://host[:port][/db], not '" + text + "'"};
            }
        }),
        "share limits and jobs with the replicas that use this Redis (redis://host[:port][/db])")(
        "lease-ms", po::value<long>()->default_value(app.lease.count())->notifier([&app](long ms) {
            check_range("lease-ms", ms, 100L, 3600L * 1000);
            app.lease = std::chrono::milliseconds{ms};
        }),
        "with --redis: how long what this replica holds outlives it if it dies, ms")(
        "instance", po::value(&app.instance)->default_value(app.instance),
        "with --redis: this replica's name (default host:pid)");
    return description;
}

std::optional<int> parse_command_line(int argc, const char* const* argv,
                                      const po::options_description& description)
{
    try {
        po::variables_map vm;
        // No positional arguments: `tame-samples 9090` is a mistake, not port 9090.
        po::store(po::command_line_parser(argc, argv).options(description).positional({}).run(),
                  vm);
        if (vm.count("help") != 0) {
            std::cout << description << '\n';
            return 0;
        }
        po::notify(vm);
    } catch (const std::exception& e) {
        std::cerr << argv[0] << ": " << e.what() << "\n(see --help)\n";
        return 2;
    }
    return std::nullopt;
}

} // namespace samples
