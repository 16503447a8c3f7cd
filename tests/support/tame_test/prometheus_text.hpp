#pragma once

// A checker for the Prometheus text exposition format (0.0.4), strict enough to
// catch what a scraper would refuse.

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace tame_test {

/// An empty string if `text` is valid exposition text, else the first problem.
inline std::string prometheus_problem(const std::string& text)
{
    static const std::regex help{R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)"};
    static const std::regex type{
        R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))"};
    static const std::regex sample{
        R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? ([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)))"};
    std::map<std::string, std::string> types;
    std::set<std::string> closed; // families whose samples have ended
    std::string current;
    std::istringstream lines{text};
    std::string line;
    int number = 0;
    if (text.empty() || text.back() != '\n') {
        return "the text does not end with a newline";
    }
    while (std::getline(lines, line)) {
        ++number;
        const auto where = "line " + std::to_string(number) + ": " + line;
        std::smatch m;
        if (std::regex_match(line, m, help)) {
            continue;
        }
        if (std::regex_match(line, m, type)) {
            if (types.count(m[1])) {
                return "TYPE repeated, " + where;
            }
            types[m[1]] = m[2];
            continue;
        }
        if (!std::regex_match(line, m, sample)) {
            return "not a sample, " + where;
        }
        std::string family = m[1];
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
            const std::string s{suffix};
            if (!types.count(family) && family.size() > s.size() && family.ends_with(s)) {
                family.erase(family.size() - s.size());
            }
        }
        if (!types.count(family)) {
            return "sample without a TYPE, " + where;
        }
        if (family != current) {
            if (closed.count(family)) {
                return "samples of one family are not together, " + where;
            }
            if (!current.empty()) {
                closed.insert(current);
            }
            current = family;
        }
    }
    return {};
}

} // namespace tame_test
