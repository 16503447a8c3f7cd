#include "cpu_meter.hpp"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

namespace tame::detail {
namespace {

constexpr std::chrono::milliseconds sample_interval{250};
constexpr double beta = 0.95;

std::chrono::nanoseconds process_cpu_time() noexcept
{
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec};
}

} // namespace

double cpu_meter::usable_cores()
{
    double cores = std::max(1U, std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        cores = CPU_COUNT(&set);
    }
    // cgroup v2: "max 100000", or "<quota> <period>" in microseconds.
    std::ifstream max_file{"/sys/fs/cgroup/cpu.max"};
    std::string quota;
    double period = 0;
    if (max_file >> quota >> period && quota != "max" && period > 0) {
        try {
            cores = std::min(cores, std::stod(quota) / period);
        } catch (...) {
            // Not a number: no quota we can read.
        }
    }
    return std::max(cores, 0.01);
}

cpu_meter::cpu_meter(double cores)
    : cores_{cores > 0 ? cores : usable_cores()},
      last_wall_{clock::now().time_since_epoch().count()}, last_cpu_{process_cpu_time()}
{
}

unsigned cpu_meter::usage()
{
    const auto now = clock::now();
    const auto since = [&] {
        return now - clock::time_point{clock::duration{last_wall_.load(std::memory_order_relaxed)}};
    };
    if (since() >= sample_interval) {
        std::unique_lock lock{refresh_, std::try_to_lock};
        const auto wall = since();
        if (lock.owns_lock() && wall >= sample_interval) {
            const auto cpu = process_cpu_time();
            const double sample =
                std::clamp(1000.0 * static_cast<double>((cpu - last_cpu_).count()) /
                               static_cast<double>(wall.count()) / cores_,
                           0.0, 1000.0);
            const double steps = std::chrono::duration<double>(wall) / sample_interval;
            const double keep = std::pow(beta, steps);
            smoothed_ = smoothed_ * keep + sample * (1 - keep);
            last_wall_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
            last_cpu_ = cpu;
            usage_.store(static_cast<unsigned>(std::lround(smoothed_)), std::memory_order_relaxed);
        }
    }
    return usage_.load(std::memory_order_relaxed);
}

} // namespace tame::detail
