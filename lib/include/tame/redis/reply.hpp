#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tame::redis {

/// A Redis reply (RESP2), as a value.
class reply {
  public:
    enum class kind { nil, integer, string, status, error, array };

    /// A nil reply; the make_ functions build the others (the RESP reader does).
    reply() = default;
    static reply make_nil() { return reply{}; }
    static reply make_integer(std::int64_t value);
    static reply make_string(kind k, std::string text);
    static reply make_array(std::vector<reply> elements);

    kind type() const noexcept { return kind_; }
    bool is_nil() const noexcept { return kind_ == kind::nil; }
    bool is_error() const noexcept { return kind_ == kind::error; }

    /// The integer of an integer reply, else 0.
    std::int64_t integer() const noexcept { return integer_; }
    /// The text of a string, status or error reply, else empty.
    const std::string& text() const noexcept { return text_; }
    /// The elements of an array reply, else empty.
    const std::vector<reply>& elements() const noexcept { return elements_; }

    /// The reply as an integer: an integer reply, or a string holding one.
    /// Throws std::invalid_argument otherwise.
    std::int64_t as_integer() const;

  private:
    kind kind_ = kind::nil;
    std::int64_t integer_ = 0;
    std::string text_;
    std::vector<reply> elements_;
};

} // namespace tame::redis
