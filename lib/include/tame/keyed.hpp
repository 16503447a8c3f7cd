#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <utility>

namespace tame {

/// An ordering key for task_pool work, given as the first argument of a submit:
/// `pool.async_submit(tame::keyed{patient_id}, f, token)`.
///
/// Tasks with equal keys run one at a time, in the order they were submitted,
/// each to its end (suspensions included) before the next starts; tasks with
/// other keys, or none, run in parallel with them. Keys are strings; integers
/// are turned into their decimal text, so `keyed{42}` and `keyed{"42"}` are equal.
class keyed {
  public:
    explicit keyed(std::string key) noexcept : key_{std::move(key)} {}
    explicit keyed(std::string_view key) : key_{key} {}
    explicit keyed(const char* key) : key_{key} {}

    template <std::integral Integer>
    explicit keyed(Integer key) : key_{std::to_string(key)}
    {
    }

    const std::string& key() const noexcept { return key_; }

  private:
    std::string key_;
};

} // namespace tame
