#pragma once

// Part of tame's compiled core: no Asio header here (see lib/CMakeLists.txt).
// Cancellation types travel as the bits of asio::cancellation_type.

#include <tame/detail/intrusive_list.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>

namespace tame::detail {

/// Something a cancel_source reaches when it is emitted: an operation bound to
/// the source, or a child source.
///
/// Registrations are owned by shared_ptr. The source's list holds them without a
/// reference and takes one (if the registration is still alive) before it
/// delivers, outside its lock: so a registration must leave the list before the
/// last reference to it goes, or in the destructor of its most derived class.
class cancel_registration : public intrusive_list_node,
                            public std::enable_shared_from_this<cancel_registration> {
  public:
    cancel_registration() = default;
    cancel_registration(const cancel_registration&) = delete;
    cancel_registration& operator=(const cancel_registration&) = delete;

    /// Delivers an emit() of `type`; called on the emitting thread, with no lock held.
    virtual void deliver(unsigned type) = 0;

  protected:
    ~cancel_registration() = default;
};

/// The shared state of a cancel_source: the type emitted so far and the
/// registrations that an emit() must reach. Every member is thread-safe.
///
/// A child source is a registration of its parent that re-emits what it receives.
class cancel_source_state final : public cancel_registration {
  public:
    cancel_source_state() = default;
    ~cancel_source_state();

    /// A child of `parent`: cancelled with it, and already cancelled if it is.
    static std::shared_ptr<cancel_source_state>
    make_child(std::shared_ptr<cancel_source_state> parent);

    /// Adds `r` to the registrations, unless an emit() came first: then `r` is
    /// left out and the types emitted so far are returned (0 means attached).
    unsigned attach(cancel_registration& r);

    /// Removes an attached `r`.
    void detach(cancel_registration& r) noexcept;

    /// Records `type` and delivers it to every registration.
    void emit(unsigned type);

    /// The types emitted so far, combined; 0 before the first emit().
    unsigned emitted() const noexcept { return emitted_.load(std::memory_order_acquire); }

    /// How many registrations there are.
    std::size_t size() const noexcept;

    void deliver(unsigned type) override { emit(type); }

  private:
    mutable std::mutex mutex_;
    intrusive_list<cancel_registration> registrations_;
    std::size_t size_ = 0;
    std::atomic<unsigned> emitted_{0};
    std::shared_ptr<cancel_source_state> parent_; // set while attached to a parent
};

} // namespace tame::detail
