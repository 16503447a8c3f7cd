#include <tame/http/metrics.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace tame::http {

struct metrics_registry::app_series {
    metric_type type;
    std::string name;
    std::string help;
    std::string labels;
    std::function<double()> read;
};

namespace {

bool is_metric_name(std::string_view name)
{
    auto head = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    };
    return !name.empty() && head(name.front()) &&
           std::all_of(name.begin(), name.end(),
                       [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

// Label values escape backslash, double quote and newline.
std::string escaped(std::string_view value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

void append_number(std::string& out, double value)
{
    if (std::isnan(value)) {
        out += "NaN";
    } else if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
    } else {
        // Whole numbers (counts kept as doubles) print as integers; others as
        // the shortest text that reads back as the same double: 0.0005, not
        // %.17g's 0.00050000000000000001.
        char buf[64];
        const auto end =
            std::trunc(value) == value && std::fabs(value) < 1e15
                ? std::to_chars(buf, buf + sizeof buf, static_cast<long long>(value)).ptr
                : std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general).ptr;
        out.append(buf, end);
    }
}

void append_number(std::string& out, std::uint64_t value)
{
    out += std::to_string(value);
}

void append_header(std::string& out, std::string_view name, std::string_view help,
                   std::string_view type)
{
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

} // namespace

metrics_registry::metrics_registry(std::vector<std::string> route_labels)
{
    route_labels.emplace_back("unmatched");
    route_labels.emplace_back("invalid");
    for (auto& label : route_labels) {
        routes_.push_back(std::make_unique<route_series>());
        routes_.back()->label = std::move(label);
    }
    for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
        bucket_bounds_ns_[i] = static_cast<std::int64_t>(std::llround(latency_buckets[i] * 1e9));
    }
}

metrics_registry::~metrics_registry() = default;

void metrics_registry::add(metric_type type, std::string name, std::string help, std::string labels,
                           std::function<double()> read)
{
    if (!is_metric_name(name)) {
        throw std::invalid_argument{"tame::http::metrics_registry: bad metric name: " + name};
    }
    std::lock_guard lock{app_mutex_};
    app_.push_back({type, std::move(name), std::move(help), std::move(labels), std::move(read)});
}

void metrics_registry::record_request(std::size_t route, unsigned status,
                                      std::chrono::nanoseconds duration) noexcept
{
    auto& series = *routes_[std::min(route, routes_.size() - 1)];
    series.by_status[std::min<std::size_t>(status, series.by_status.size() - 1)].fetch_add(
        1, std::memory_order_relaxed);
    const auto ns = duration.count();
    const auto bucket = static_cast<std::size_t>(
        std::lower_bound(bucket_bounds_ns_.begin(), bucket_bounds_ns_.end(), ns) -
        bucket_bounds_ns_.begin());
    series.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
    series.duration_ns.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0)),
                                 std::memory_order_relaxed);
}

void metrics_registry::add_connection(long delta) noexcept
{
    connections_.fetch_add(delta, std::memory_order_relaxed);
    if (delta > 0) {
        connections_total_.fetch_add(static_cast<std::uint64_t>(delta), std::memory_order_relaxed);
    }
}

std::uint64_t metrics_registry::requests(std::size_t route, unsigned status) const noexcept
{
    if (route >= routes_.size() || status >= 600) {
        return 0;
    }
    return routes_[route]->by_status[status].load(std::memory_order_relaxed);
}

std::string metrics_registry::render() const
{
    std::string out;
    out.reserve(4096);

    append_header(out, "tame_http_requests_total",
                  "HTTP requests answered, by route and status code.", "counter");
    for (const auto& r : routes_) {
        for (std::size_t code = 0; code < r->by_status.size(); ++code) {
            const auto n = r->by_status[code].load(std::memory_order_relaxed);
            if (n == 0) {
                continue;
            }
            out += "tame_http_requests_total{route=\"" + escaped(r->label) + "\",code=\"" +
                   std::to_string(code) + "\"} ";
            append_number(out, n);
            out += '\n';
        }
    }

    append_header(out, "tame_http_request_duration_seconds",
                  "Time from a request's first byte to its response's handing to the socket.",
                  "histogram");
    for (const auto& r : routes_) {
        std::uint64_t cumulative = 0;
        for (const auto& b : r->buckets) {
            cumulative += b.load(std::memory_order_relaxed);
        }
        if (cumulative == 0) {
            continue;
        }
        const std::string route = "route=\"" + escaped(r->label) + "\"";
        cumulative = 0;
        for (std::size_t i = 0; i < r->buckets.size(); ++i) {
            cumulative += r->buckets[i].load(std::memory_order_relaxed);
            out += "tame_http_request_duration_seconds_bucket{" + route + ",le=\"";
            if (i < latency_buckets.size()) {
                append_number(out, latency_buckets[i]);
            } else {
                out += "+Inf";
            }
            out += "\"} ";
            append_number(out, cumulative);
            out += '\n';
        }
        out += "tame_http_request_duration_seconds_sum{" + route + "} ";
        append_number(out,
                      static_cast<double>(r->duration_ns.load(std::memory_order_relaxed)) / 1e9);
        out += "\ntame_http_request_duration_seconds_count{" + route + "} ";
        append_number(out, cumulative);
        out += '\n';
    }

    append_header(out, "tame_http_requests_in_flight", "Requests in their handler now.", "gauge");
    out += "tame_http_requests_in_flight " + std::to_string(in_flight()) + "\n";
    append_header(out, "tame_http_shed_total",
                  "Requests answered 503 before their handler ran, by reason.", "counter");
    out += "tame_http_shed_total{reason=\"max_in_flight\"} " +
           std::to_string(shed(shed_reason::max_in_flight)) + "\n";
    out += "tame_http_shed_total{reason=\"overload\"} " +
           std::to_string(shed(shed_reason::overload)) + "\n";
    append_header(out, "tame_http_connections", "Connections open now.", "gauge");
    out += "tame_http_connections " + std::to_string(connections()) + "\n";
    append_header(out, "tame_http_connections_total", "Connections accepted.", "counter");
    out += "tame_http_connections_total " +
           std::to_string(connections_total_.load(std::memory_order_relaxed)) + "\n";

    std::lock_guard lock{app_mutex_};
    // Series are grouped by name, each group under one HELP and TYPE, in the order
    // their names were first added.
    std::vector<bool> done(app_.size());
    for (std::size_t i = 0; i < app_.size(); ++i) {
        if (done[i]) {
            continue;
        }
        const auto& first = app_[i];
        append_header(out, first.name, first.help,
                      first.type == metric_type::counter ? "counter" : "gauge");
        for (std::size_t j = i; j < app_.size(); ++j) {
            if (done[j] || app_[j].name != first.name) {
                continue;
            }
            done[j] = true;
            out += app_[j].name;
            if (!app_[j].labels.empty()) {
                out += '{';
                out += app_[j].labels;
                out += '}';
            }
            out += ' ';
            append_number(out, app_[j].read());
            out += '\n';
        }
    }
    return out;
}

} // namespace tame::http
