#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/async_result.hpp>

#include <type_traits>
#include <utility>

namespace tame::detail {

/// The async_result of a completion token adapter (cancel_at_t,
/// cancel_source_binder) whose member `token` is the adapted token: the
/// operation's initiation is wrapped in `Wrap<Initiation>`, built from the
/// initiation and the adapter, and then initiated as `token` would be.
template <template <class> class Wrap, class Token, class... Signatures>
struct wrapping_async_result : asio::async_result<Token, Signatures...> {
    template <class Initiation>
    using wrapped = Wrap<std::decay_t<Initiation>>;

    // The return type is spelled out so that checking a token (Asio's concepts do,
    // with an archetype initiation) does not instantiate the body.
    template <class Initiation, class Adapter, class... Args>
    static auto initiate(Initiation&& initiation, Adapter&& adapter, Args&&... args)
        -> decltype(asio::async_result<Token, Signatures...>::initiate(
            std::declval<wrapped<Initiation>>(), std::declval<Token>(), std::declval<Args>()...))
    {
        return asio::async_result<Token, Signatures...>::initiate(
            wrapped<Initiation>{std::forward<Initiation>(initiation), adapter},
            std::forward<Adapter>(adapter).token, std::forward<Args>(args)...);
    }
};

} // namespace tame::detail
