#pragma once

#include <boost/asio/wait_traits.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tame_test {

/// A clock that moves only when a test says so, for timers that must not fire
/// "yet": arm a timer on it, advance() past its expiry, then poll().
struct manual_clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<manual_clock>;
    static constexpr bool is_steady = true;

    static time_point now() noexcept { return time_point{duration{ticks().load()}}; }

    static void advance(duration d) noexcept { ticks() += d.count(); }

  private:
    static std::atomic<rep>& ticks() noexcept
    {
        static std::atomic<rep> value{0};
        return value;
    }
};

} // namespace tame_test

// The reactor must look at the timer queue on every poll(), since the clock does
// not move by itself: ask it to wait for (almost) nothing.
template <>
struct boost::asio::wait_traits<tame_test::manual_clock> {
    static tame_test::manual_clock::duration
    to_wait_duration(const tame_test::manual_clock::duration&)
    {
        return tame_test::manual_clock::duration::zero();
    }

    static tame_test::manual_clock::duration
    to_wait_duration(const tame_test::manual_clock::time_point&)
    {
        return tame_test::manual_clock::duration::zero();
    }
};
