#pragma once

#include <cstddef>
#include <new>
#include <utility>

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

/// A per-thread free list of blocks of one size, up to `Limit` of them: for
/// objects made in large numbers on one thread and freed on another, which
/// operation_cache's few entries cannot absorb.
template <std::size_t Size, std::size_t Limit>
class block_free_list {
  public:
    static void* allocate()
    {
        list& free = local();
        if (free.head == nullptr || finished) {
            return ::operator new(Size);
        }
        block* b = free.head;
        free.head = b->next;
        --free.size;
        return b;
    }

    static void deallocate(void* memory) noexcept
    {
        list& free = local();
        if (finished || free.size >= Limit) {
            ::operator delete(memory);
            return;
        }
        free.head = new (memory) block{free.head};
        ++free.size;
    }

  private:
    static_assert(Size >= sizeof(void*));

    struct block {
        block* next;
    };

    struct list {
        block* head = nullptr;
        std::size_t size = 0;
        list() = default;
        list(const list&) = delete;
        list& operator=(const list&) = delete;
        ~list()
        {
            finished = true;
            while (head != nullptr) {
                ::operator delete(std::exchange(head, head->next));
            }
        }
    };

    // As in operation_cache: set once this thread's list is gone.
    static inline thread_local bool finished = false;

    static list& local() noexcept
    {
        thread_local list instance;
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
