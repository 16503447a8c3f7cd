#include <tame/http/router.hpp>

#include <boost/container/small_vector.hpp>
#include <boost/url/pct_string_view.hpp>

#include <algorithm>
#include <stdexcept>

namespace tame::http {
namespace {

// Splits "/a/b" into {"a", "b"}; "/" is one empty segment, as is a trailing "/".
template <class OnSegment>
void for_each_segment(std::string_view path, OnSegment&& on_segment)
{
    path.remove_prefix(1);
    for (;;) {
        const auto slash = path.find('/');
        on_segment(path.substr(0, slash));
        if (slash == std::string_view::npos) {
            return;
        }
        path.remove_prefix(slash + 1);
    }
}

bool is_param_name(std::string_view name)
{
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

// The decoded form of one encoded segment; false if its escapes are malformed.
bool decode_segment(std::string_view encoded, std::string& decoded)
{
    if (encoded.find('%') == std::string_view::npos) {
        decoded.assign(encoded);
        return true;
    }
    auto checked = boost::urls::make_pct_string_view(encoded);
    if (!checked) {
        return false;
    }
    decoded = checked->decode();
    return true;
}

} // namespace

std::vector<router::segment> router::parse_pattern(std::string_view pattern)
{
    if (pattern.empty() || pattern.front() != '/') {
        throw std::invalid_argument{"tame::http::router: pattern must start with '/': " +
                                    std::string{pattern}};
    }
    std::vector<segment> segments;
    for_each_segment(pattern, [&](std::string_view text) {
        if (text.size() >= 2 && text.front() == '{' && text.back() == '}') {
            auto name = text.substr(1, text.size() - 2);
            const bool repeated =
                std::any_of(segments.begin(), segments.end(),
                            [&](const segment& s) { return s.is_param && s.text == name; });
            if (!is_param_name(name) || repeated) {
                throw std::invalid_argument{"tame::http::router: bad parameter '" +
                                            std::string{text} + "' in " + std::string{pattern}};
            }
            segments.push_back({std::string{name}, true});
        } else {
            segments.push_back({std::string{text}, false});
        }
    });
    return segments;
}

bool router::same_shape(const std::vector<segment>& a, const std::vector<segment>& b)
{
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](const segment& x, const segment& y) {
                          return x.is_param == y.is_param && (x.is_param || x.text == y.text);
                      });
}

router& router::add(verb method, std::string_view pattern, handler h)
{
    if (!h) {
        throw std::invalid_argument{"tame::http::router: empty handler for " +
                                    std::string{pattern}};
    }
    auto segments = parse_pattern(pattern);
    for (const auto& r : routes_) {
        if (r.method == method && same_shape(r.segments, segments)) {
            throw std::invalid_argument{"tame::http::router: duplicate route " + r.label};
        }
    }
    std::string label{boost::beast::http::to_string(method)};
    label += ' ';
    label += pattern;
    routes_.push_back({method, std::move(segments), std::move(label), std::move(h)});
    return *this;
}

bool router::contains(verb method, std::string_view pattern) const
{
    auto segments = parse_pattern(pattern);
    return std::any_of(routes_.begin(), routes_.end(), [&](const route& r) {
        return r.method == method && same_shape(r.segments, segments);
    });
}

bool router::more_specific(const route& a, const route& b)
{
    for (std::size_t i = 0; i < a.segments.size(); ++i) {
        if (a.segments[i].is_param != b.segments[i].is_param) {
            return !a.segments[i].is_param;
        }
    }
    return false;
}

route_match router::match(verb method, std::string_view encoded_path) const
{
    route_match result;
    if (encoded_path.empty() || encoded_path.front() != '/') {
        return result;
    }

    // The path's segments, decoded. Most paths have no escapes and a few
    // segments: they are views into the path, and nothing is allocated.
    boost::container::small_vector<std::string_view, 16> segments;
    std::vector<std::string> decoded_storage;
    bool has_escapes = encoded_path.find('%') != std::string_view::npos;
    if (has_escapes) {
        decoded_storage.reserve(
            static_cast<std::size_t>(std::count(encoded_path.begin(), encoded_path.end(), '/')));
    }
    bool well_formed = true;
    for_each_segment(encoded_path, [&](std::string_view encoded) {
        if (has_escapes && encoded.find('%') != std::string_view::npos) {
            well_formed = well_formed && decode_segment(encoded, decoded_storage.emplace_back());
            segments.push_back(decoded_storage.back());
        } else {
            segments.push_back(encoded);
        }
    });
    if (!well_formed) {
        return result;
    }

    // A route matches when every literal equals its segment and every parameter
    // has a non-empty one; among matches, the one with a literal where the other
    // has a parameter, first, wins.
    const route* best = nullptr;
    const route* best_for_head = nullptr;
    boost::container::small_vector<verb, 8> allowed;
    for (const auto& r : routes_) {
        if (r.segments.size() != segments.size()) {
            continue;
        }
        bool matches = true;
        for (std::size_t i = 0; matches && i < segments.size(); ++i) {
            const auto& s = r.segments[i];
            matches = s.is_param ? !segments[i].empty() : s.text == segments[i];
        }
        if (!matches) {
            continue;
        }
        if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) {
            allowed.push_back(r.method);
        }
        if (r.method == method) {
            if (best == nullptr || more_specific(r, *best)) {
                best = &r;
            }
        } else if (method == verb::head && r.method == verb::get) {
            if (best_for_head == nullptr || more_specific(r, *best_for_head)) {
                best_for_head = &r;
            }
        }
    }

    if (best == nullptr) {
        best = best_for_head;
    }
    if (best == nullptr) {
        if (!allowed.empty()) {
            result.result = route_match::outcome::method_not_allowed;
            if (std::find(allowed.begin(), allowed.end(), verb::get) != allowed.end() &&
                std::find(allowed.begin(), allowed.end(), verb::head) == allowed.end()) {
                allowed.push_back(verb::head);
            }
            for (auto m : allowed) {
                if (!result.allow.empty()) {
                    result.allow += ", ";
                }
                result.allow += boost::beast::http::to_string(m);
            }
        }
        return result;
    }

    result.result = route_match::outcome::found;
    result.index = static_cast<std::size_t>(best - routes_.data());
    for (std::size_t i = 0; i < segments.size(); ++i) {
        if (best->segments[i].is_param) {
            result.params.emplace_back(best->segments[i].text, std::string{segments[i]});
        }
    }
    return result;
}

} // namespace tame::http
