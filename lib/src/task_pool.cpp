// The default on_exception of a task_pool. No Asio header here (see CMakeLists).
#include <tame/task_pool_options.hpp>

#include <cstdio>
#include <exception>

namespace tame::detail {

void log_task_exception(std::exception_ptr e) noexcept
{
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "tame::task_pool: a task failed: %s\n", error.what());
    } catch (...) {
        std::fprintf(stderr, "tame::task_pool: a task failed with a non-standard exception\n");
    }
}

} // namespace tame::detail
