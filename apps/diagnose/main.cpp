// tame-diagnose: GET /diagnose calls a slow upstream under a deadline that
// really stops the call.
#include "common/service_host.hpp"
#include "diagnose/service.hpp"

#include <iostream>

int main(int argc, char** argv)
{
    samples::app_options app;
    samples::diagnose_options diagnose;
    auto flags =
        samples::describe_app_options("tame-diagnose: an upstream call under a deadline", app);
    samples::add_diagnose_options(flags, diagnose);
    if (auto exit_code = samples::parse_command_line(argc, argv, flags)) {
        return *exit_code;
    }
    try {
        boost::asio::io_context io{static_cast<int>(app.thread_count())};
        samples::diagnose_service service{io.get_executor(), diagnose};
        return samples::run_services(io, app, {&service}, "tame-diagnose");
    } catch (const std::exception& e) {
        std::cerr << "tame-diagnose: " << e.what() << '\n';
        return 2;
    }
}
