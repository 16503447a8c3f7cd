#pragma once

// The bytes a fuzzer is given, read as small numbers: each number takes one
// byte (two above 255), so that a mutation of one byte changes one choice. An
// exhausted input reads as the smallest value, so every input is a program.

#include <cstddef>
#include <cstdint>

class fuzz_input {
  public:
    fuzz_input(const std::uint8_t* data, std::size_t size) noexcept : data_{data}, size_{size} {}

    bool empty() const noexcept { return size_ == 0; }

    /// A number from `lo` to `hi`, both included.
    std::size_t number(std::size_t lo, std::size_t hi) noexcept
    {
        const std::size_t span = hi - lo + 1;
        std::size_t raw = next();
        if (span > 256) {
            raw = raw << 8 | next();
        }
        return lo + raw % span;
    }

  private:
    std::size_t next() noexcept
    {
        if (size_ == 0) {
            return 0;
        }
        --size_;
        return *data_++;
    }

    const std::uint8_t* data_;
    std::size_t size_;
};
