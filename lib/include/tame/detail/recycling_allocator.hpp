#pragma once

#include <cstddef>
#include <new>

namespace tame::detail {

/// Per-thread free lists for the memory of tame's queued operations.
///
/// Asio's own recycling cache keeps two blocks per purpose and hands a cached
/// block to any request that fits, so a smaller allocation of Asio's (a posted
/// function, say) often takes the block a waiter just freed, and the next waiter
/// goes to malloc. Here a block is reused only by a request of its own size.
class operation_cache {
public:
    static void* allocate(std::size_t size)
    {
        const std::size_t rounded = round(size);
        if (finished) {
            return ::operator new(rounded);
        }
        for (entry& e : local().entries) {
            if (e.size == rounded) {
                e.size = 0;
                return e.block;
            }
        }
        return ::operator new(rounded);
    }

    static void deallocate(void* block, std::size_t size) noexcept
    {
        const std::size_t rounded = round(size);
        if (finished) {
            ::operator delete(block);
            return;
        }
        for (entry& e : local().entries) {
            if (e.size == 0) {
                e.block = block;
                e.size = rounded;
                return;
            }
        }
        ::operator delete(block);
    }

private:
    struct entry {
        void* block = nullptr;
        std::size_t size = 0; // 0: empty
    };

    struct cache {
        entry entries[8];

        cache() = default;
        cache(const cache&) = delete;
        cache& operator=(const cache&) = delete;
        ~cache()
        {
            finished = true;
            for (entry& e : entries) {
                if (e.size != 0) {
                    ::operator delete(e.block);
                    e.size = 0;
                }
            }
        }
    };

    // Set once this thread's cache is destroyed: an operation destroyed later
    // during thread exit (say, by a static io_context) must not use it. Being
    // trivially destructible, the flag itself outlives the cache.
    static inline thread_local bool finished = false;

    static std::size_t round(std::size_t size) noexcept { return (size + 15) & ~std::size_t{15}; }

    static cache& local() noexcept
    {
        thread_local cache instance;
        return instance;
    }
};

/// The allocator of queued operations whose handler names none.
template <class T>
class recycling_allocator {
public:
    using value_type = T;

    recycling_allocator() noexcept = default;
    template <class U>
    recycling_allocator(const recycling_allocator<U>&) noexcept
    {
    }

    T* allocate(std::size_t n)
    {
        static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
        return static_cast<T*>(operation_cache::allocate(n * sizeof(T)));
    }

    void deallocate(T* p, std::size_t n) noexcept { operation_cache::deallocate(p, n * sizeof(T)); }

    template <class U>
    bool operator==(const recycling_allocator<U>&) const noexcept
    {
        return true;
    }
};

} // namespace tame::detail
