// tame-report-api: POST /reports/generate runs each report in one process-wide
// task_pool and waits for its own (Submit + WaitGroup).
#include "common/service_host.hpp"
#include "report_api/service.hpp"

#include <iostream>

int main(int argc, char** argv)
{
    samples::app_options app;
    samples::report_api_options reports;
    auto flags =
        samples::describe_app_options("tame-report-api: report generation on a task pool", app);
    samples::add_report_api_options(flags, reports);
    if (auto exit_code = samples::parse_command_line(argc, argv, flags)) {
        return *exit_code;
    }
    try {
        reports.single_threaded = app.single_threaded();
        boost::asio::io_context io{static_cast<int>(app.thread_count())};
        samples::report_api_service service{io.get_executor(), reports};
        return samples::run_services(io, app, {&service}, "tame-report-api");
    } catch (const std::exception& e) {
        std::cerr << "tame-report-api: " << e.what() << '\n';
        return 2;
    }
}
