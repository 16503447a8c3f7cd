// tame-samples: the three sample services on one port (the README's run
// command).
#include "common/service_host.hpp"
#include "diagnose/service.hpp"
#include "report_api/service.hpp"
#include "sync_data/service.hpp"

#include <iostream>

int main(int argc, char** argv)
{
    samples::app_options app;
    samples::sync_data_options sync;
    samples::report_api_options reports;
    samples::diagnose_options diagnose;
    auto flags =
        samples::describe_app_options("tame-samples: the three sample services on one port", app);
    samples::add_sync_data_options(flags, sync);
    samples::add_report_api_options(flags, reports);
    samples::add_diagnose_options(flags, diagnose);
    if (auto exit_code = samples::parse_command_line(argc, argv, flags)) {
        return *exit_code;
    }
    sync.redis = app.redis;
    sync.lease = app.lease;
    sync.instance = app.instance;
    try {
        reports.single_threaded = app.single_threaded();
        boost::asio::io_context io{static_cast<int>(app.thread_count())};
        samples::sync_data_service sync_data{io.get_executor(), sync};
        samples::report_api_service report_api{io.get_executor(), reports};
        samples::diagnose_service diagnosis{io.get_executor(), diagnose};
        return samples::run_services(io, app, {&sync_data, &report_api, &diagnosis},
                                     "tame-samples");
    } catch (const std::exception& e) {
        std::cerr << "tame-samples: " << e.what() << '\n';
        return 2;
    }
}
