// tame-sync-data: POST /sync-data runs a batch of data-sync jobs with bounded
// concurrency (a task_group with a limit, under a service-wide semaphore).
#include "common/service_host.hpp"
#include "sync_data/service.hpp"

#include <iostream>

int main(int argc, char** argv)
{
    samples::app_options app;
    samples::sync_data_options sync;
    auto flags = samples::describe_app_options(
        "tame-sync-data: batch data sync with bounded concurrency", app);
    samples::add_sync_data_options(flags, sync);
    if (auto exit_code = samples::parse_command_line(argc, argv, flags)) {
        return *exit_code;
    }
    sync.redis = app.redis;
    sync.lease = app.lease;
    sync.instance = app.instance;
    try {
        boost::asio::io_context io{static_cast<int>(app.thread_count())};
        samples::sync_data_service service{io.get_executor(), sync};
        return samples::run_services(io, app, {&service}, "tame-sync-data");
    } catch (const std::exception& e) {
        std::cerr << "tame-sync-data: " << e.what() << '\n';
        return 2;
    }
}
