#include <tame/detail/cancel_registry.hpp>

#include <boost/assert.hpp>

#include <utility>
#include <vector>

namespace tame::detail {

std::shared_ptr<cancel_source_state>
cancel_source_state::make_child(std::shared_ptr<cancel_source_state> parent)
{
    // Attached only once a shared_ptr owns the child: an emit() of the parent
    // must be able to take a reference to it from the moment it is listed.
    auto child = std::make_shared<cancel_source_state>();
    if (const unsigned emitted = parent->attach(*child); emitted != 0) {
        child->emitted_.store(emitted, std::memory_order_release);
    } else {
        child->parent_ = std::move(parent);
    }
    return child;
}

cancel_source_state::~cancel_source_state()
{
    // Bound operations hold a reference to their source, so only child sources
    // could still be listed, and they hold one too.
    BOOST_ASSERT(registrations_.empty());
    if (parent_) {
        parent_->detach(*this);
    }
}

unsigned cancel_source_state::attach(cancel_registration& r)
{
    std::lock_guard lock{mutex_};
    if (const unsigned emitted = emitted_.load(std::memory_order_relaxed); emitted != 0) {
        return emitted;
    }
    registrations_.push_back(r);
    ++size_;
    return 0;
}

void cancel_source_state::detach(cancel_registration& r) noexcept
{
    std::lock_guard lock{mutex_};
    registrations_.erase(r);
    --size_;
}

void cancel_source_state::emit(unsigned type)
{
    if (type == 0) {
        return; // cancellation_type::none cancels nothing
    }
    // Delivered outside the lock: a delivery posts to an executor, or emits a
    // child (which takes the child's lock), and a finishing operation must be
    // able to detach meanwhile.
    std::vector<std::shared_ptr<cancel_registration>> targets;
    {
        std::lock_guard lock{mutex_};
        emitted_.fetch_or(type, std::memory_order_acq_rel);
        targets.reserve(size_);
        registrations_.for_each([&](cancel_registration& r) {
            // Empty when the registration is being destroyed; it is about to
            // detach (it waits for this lock) and needs nothing more.
            if (auto target = r.weak_from_this().lock()) {
                targets.push_back(std::move(target));
            }
        });
    }
    for (const auto& target : targets) {
        target->deliver(type);
    }
}

std::size_t cancel_source_state::size() const noexcept
{
    std::lock_guard lock{mutex_};
    return size_;
}

} // namespace tame::detail
