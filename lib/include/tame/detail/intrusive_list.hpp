#pragma once

#include <boost/assert.hpp>

namespace tame::detail {

/// Links of an element of an intrusive_list; an element is in at most one list.
struct intrusive_list_node {
    intrusive_list_node* prev = nullptr;
    intrusive_list_node* next = nullptr;
};

/// A doubly linked FIFO of elements that embed their own links: queueing and
/// removal never allocate, and removing a cancelled waiter from the middle is O(1).
template <class T>
class intrusive_list {
  public:
    intrusive_list() = default;
    intrusive_list(const intrusive_list&) = delete;
    intrusive_list& operator=(const intrusive_list&) = delete;

    bool empty() const noexcept { return head_ == nullptr; }

    T& front() const noexcept
    {
        BOOST_ASSERT(head_ != nullptr);
        return static_cast<T&>(*head_);
    }

    void push_back(T& element) noexcept
    {
        intrusive_list_node& node = element;
        node.prev = tail_;
        node.next = nullptr;
        if (tail_ != nullptr) {
            tail_->next = &node;
        } else {
            head_ = &node;
        }
        tail_ = &node;
    }

    T& pop_front() noexcept
    {
        T& element = front();
        erase(element);
        return element;
    }

    /// Unlinks an element that is in this list.
    void erase(T& element) noexcept
    {
        intrusive_list_node& node = element;
        if (node.prev != nullptr) {
            node.prev->next = node.next;
        } else {
            head_ = node.next;
        }
        if (node.next != nullptr) {
            node.next->prev = node.prev;
        } else {
            tail_ = node.prev;
        }
        node.prev = node.next = nullptr;
    }

    /// Calls `f(element)` for each element, front to back; `f` must not change the list.
    template <class F>
    void for_each(F&& f) const
    {
        for (intrusive_list_node* node = head_; node != nullptr; node = node->next) {
            f(static_cast<T&>(*node));
        }
    }

    /// Moves every element of `other` to the back of this list.
    void splice_back(intrusive_list& other) noexcept
    {
        if (other.empty()) {
            return;
        }
        if (tail_ != nullptr) {
            tail_->next = other.head_;
            other.head_->prev = tail_;
        } else {
            head_ = other.head_;
        }
        tail_ = other.tail_;
        other.head_ = other.tail_ = nullptr;
    }

  private:
    intrusive_list_node* head_ = nullptr;
    intrusive_list_node* tail_ = nullptr;
};

} // namespace tame::detail
