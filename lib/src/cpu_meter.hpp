#pragma once

#include <atomic>
#include <chrono>
#include <mutex>

namespace tame::detail {

/// This process's CPU usage in thousandths of the cores it may use, sampled
/// at most every 250 ms when read and smoothed as go-zero smooths it
/// (core/stat/usage.go: new = old * 0.95 + sample * 0.05 per 250 ms; a longer
/// gap between readings counts as that many steps of the same sample).
///
/// Thread safety: usage() may be called from any thread; one caller samples,
/// the others read the last value.
class cpu_meter {
  public:
    /// `cores`: what 1000 stands for; 0: usable_cores().
    explicit cpu_meter(double cores = 0);

    unsigned usage();

    /// The cores this process may use: its affinity mask, capped by its cgroup
    /// (v2) cpu.max quota.
    static double usable_cores();

  private:
    using clock = std::chrono::steady_clock;

    const double cores_;
    std::atomic<unsigned> usage_{0};
    std::mutex refresh_;
    std::atomic<clock::rep> last_wall_; // read before the lock is tried
    std::chrono::nanoseconds last_cpu_;
    double smoothed_ = 0;
};

} // namespace tame::detail
