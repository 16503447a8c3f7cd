#!/usr/bin/env bash
# Soak test (issue 7): tame-samples under steady load for a long time must not
# grow. Two wrk runs at once, for 10 s of warm-up plus `seconds`:
#
#   POST /reports/generate {"reportIds":[1,2,3]}
#   POST /sync-data?tasks=20&concurrency=5&task_ms=1
#
# The server's VmRSS and open fds are sampled every 10 s into a CSV. At the end
# it prints requests/s and p99 per endpoint, non-2xx answers and socket errors
# (wrk's), RSS and fds after the warm-up and at the end, and their growth, and
# compares the server's request counters (/metrics) with wrk's counts.
#
#   bash tests/soak/soak.sh path/to/tame-samples [seconds=600]
#
# Fails (exit 1) when RSS or fds grew by 5% or more, when a request wrk
# completed is missing from the server's counters, on any non-2xx answer or
# socket error, or when SIGTERM does not end the server with status 0.
# CONNECTIONS (default 32) is split between the two endpoints; the CSV and wrk's
# output stay in SOAK_DIR (default: a new /tmp/tame-soak.* directory).
# wrk runs at nice 10; run the whole script under nice to spare other work more.
set -euo pipefail

binary=${1:?usage: soak.sh path/to/tame-samples [seconds=600]}
seconds=${2:-600}
connections=${CONNECTIONS:-32}
warmup=10
sample_every=10
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../support/samples_server.sh
source "$here/../support/samples_server.sh"
dir=${SOAK_DIR:-$(mktemp -d /tmp/tame-soak.XXXXXX)}
mkdir -p "$dir"
csv=$dir/soak.csv

report_body='{"reportIds":[1,2,3]}'
report_target=/reports/generate
sync_target='/sync-data?tasks=20&concurrency=5&task_ms=1'

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"; }
fd_count() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# Appends "seconds,rss_kb,fds" every sample_every seconds, from 0, until killed.
# Samples are taken on the clock (not sleep after sleep), so that they do not
# drift past the end of a long run.
sample_loop() {
    local start=$SECONDS next=0
    echo "seconds,rss_kb,fds" > "$csv"
    while kill -0 "$pid" 2> /dev/null; do
        echo "$((SECONDS - start)),$(rss_kb),$(fd_count)" >> "$csv"
        next=$((next + sample_every))
        while ((SECONDS - start < next)); do
            sleep 0.2
        done
    done
}

# requests_total ROUTE: the sum over status codes of tame_http_requests_total.
requests_total() {
    http_get /metrics | awk -v route="$1" -F'[{}]' '
        /^tame_http_requests_total\{/ && index($2, "route=\"" route "\"") { split($3, v, " "); n += v[1] }
        END { print n + 0 }'
}

# requests_with_code ROUTE CODE
requests_with_code() {
    http_get /metrics | awk -v label="route=\"$1\",code=\"$2\"" -F'[{}]' '
        /^tame_http_requests_total\{/ && $2 == label { split($3, v, " "); n += v[1] }
        END { print n + 0 }'
}

# run_wrk NAME TARGET BODY CONNECTIONS SECONDS: wrk's output in $dir/NAME.txt.
run_wrk() {
    SOAK_BODY=$3 nice -n 10 wrk -t1 -c"$4" -d"$5s" --timeout 5s --latency -s "$here/post.lua" \
        "http://127.0.0.1:$port$2" > "$dir/$1.txt"
}

# wrk_* FILE: figures from wrk's output.
wrk_requests() { awk '/ requests in / {print $1}' "$1"; }
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_p99() { awk '$1 == "99%" {print $2}' "$1"; }
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ {print $NF}' "$1" | grep . || echo 0; }
# "connect 0, read 0, write 0, timeout 0", or all zero when wrk printed no line.
wrk_socket_errors() { sed -n 's/.*Socket errors: //p' "$1" | grep . || echo "connect 0, read 0, write 0, timeout 0"; }
wrk_socket_error_total() { wrk_socket_errors "$1" | tr -dc '0-9 ' | awk '{print $1 + $2 + $3 + $4}'; }

# The sample nearest after the warm-up, and the last one taken under load.
csv_row_at() { awk -F, -v t="$1" 'NR > 1 && $1 >= t {print; exit}' "$csv"; }
csv_last_under_load() { awk -F, -v t="$1" 'NR > 1 && $1 <= t {row = $0} END {print row}' "$csv"; }
growth_percent() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 100 / a }'; }
below() { awk -v g="$1" -v limit="$2" 'BEGIN { exit !(g < limit) }'; }

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
pass() { echo "PASS $*"; }

stop_server() {
    local status=0
    stop_samples || status=$?
    if ((status == 124)); then
        fail "SIGTERM: the server did not exit within 15 s"
    elif ((status == 0)); then
        pass "SIGTERM: exit status 0"
    else
        fail "SIGTERM: exit status $status"
    fi
}

# Per endpoint: throughput, latency, errors, and wrk's count against the server's.
report_endpoint() { # NAME ROUTE BEFORE AFTER CONNECTIONS
    local file=$dir/$1.txt wrk_n server_n extra non2xx errors
    wrk_n=$(wrk_requests "$file")
    server_n=$(($4 - $3))
    extra=$((server_n - wrk_n))
    non2xx=$(wrk_non2xx "$file")
    errors=$(wrk_socket_error_total "$file")
    printf '%-18s %9s req/s  p99 %-8s  requests: wrk %s, server %s  non-2xx %s  socket errors: %s\n' \
        "$2" "$(wrk_rps "$file")" "$(wrk_p99 "$file")" "$wrk_n" "$server_n" "$non2xx" "$(wrk_socket_errors "$file")"
    # Every answer wrk counted must be in the server's counters. The server may
    # count a few more: requests in flight when wrk stopped (at most one per
    # connection), answered or logged 499.
    if ((extra < 0)); then
        fail "$2: wrk completed $((-extra)) requests the server did not count"
    elif ((extra > $5)); then
        fail "$2: the server counted $extra requests more than wrk completed (more than its $5 connections)"
    else
        pass "$2: no request lost (server counted $extra more than wrk: in flight at wrk's stop, $5 connections)"
    fi
    ((non2xx == 0)) || fail "$2: $non2xx non-2xx answers"
    ((errors == 0)) || fail "$2: socket errors ($(wrk_socket_errors "$file"))"
}

install_missing wrk
# 2 x CONNECTIONS in wrk and in the server, which inherits this shell's limit.
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"
pid=
port=
sampler=
trap 'if [[ -n $sampler ]]; then kill "$sampler" 2> /dev/null || true; fi
      if [[ -n $pid ]]; then kill -KILL "$pid" 2> /dev/null || true; fi' EXIT

start_samples "$binary" "$dir/server.log" --quiet --threads 2 --report-ms 1 --task-ms 1 --drain-ms 2000
wait_for_healthz
# wrk runs 2 s past the last sample, so that the end sample is taken under load.
measured=$((warmup + seconds))
duration=$((measured + 2))
report_conns=$((connections / 2))
sync_conns=$((connections - report_conns))
echo "soak.sh: tame-samples pid $pid on port $port; ${warmup} s warm-up + ${seconds} s; $connections connections"
echo "soak.sh: CSV and wrk output in $dir"

idle_fds_before=$(fd_count)
reports_before=$(requests_total "POST $report_target")
sync_before=$(requests_total "POST /sync-data")

sample_loop &
sampler=$!
run_wrk reports "$report_target" "$report_body" "$report_conns" "$duration" &
reports_wrk=$!
run_wrk sync "$sync_target" "" "$sync_conns" "$duration" &
sync_wrk=$!
wait "$reports_wrk" "$sync_wrk"
kill "$sampler" 2> /dev/null || true
wait "$sampler" 2> /dev/null || true
sampler=

# The server closes wrk's connections as wrk goes; give it a moment.
sleep 1
idle_fds_after=$(fd_count)
reports_after=$(requests_total "POST $report_target")
sync_after=$(requests_total "POST /sync-data")
client_gone=$(( $(requests_with_code "POST $report_target" 499) + $(requests_with_code "POST /sync-data" 499) ))
peak_kb=$(hwm_kb)

echo
echo "== per endpoint (wrk, ${duration} s including the warm-up)"
report_endpoint reports "POST $report_target" "$reports_before" "$reports_after" "$report_conns"
report_endpoint sync "POST /sync-data" "$sync_before" "$sync_after" "$sync_conns"
echo "(answered 499, the client gone mid-request: $client_gone; wrk leaves at most one per connection when it stops)"

echo
echo "== memory and descriptors (samples every ${sample_every} s in $csv)"
# The samples, four to a line: seconds: VmRSS kB / fds.
awk -F, 'NR > 1 { printf "%s%5s s: %6s kB / %3s fds", ((NR - 2) % 4 ? "   " : ""), $1, $2, $3 }
         NR > 1 && (NR - 1) % 4 == 0 { print "" }
         END { if ((NR - 1) % 4) print "" }' "$csv"
start_row=$(csv_row_at "$warmup")
end_row=$(csv_last_under_load "$measured")
if [[ -z $start_row || -z $end_row || $start_row == "$end_row" ]]; then
    fail "too few samples for a start and an end (run at least $((2 * sample_every)) s)"
else
    IFS=, read -r start_t start_rss start_fds <<< "$start_row"
    IFS=, read -r end_t end_rss end_fds <<< "$end_row"
    rss_growth=$(growth_percent "$start_rss" "$end_rss")
    fd_growth=$(growth_percent "$start_fds" "$end_fds")
    printf 'RSS: %s kB at %s s, %s kB at %s s: %s%% (peak VmHWM %s kB)\n' \
        "$start_rss" "$start_t" "$end_rss" "$end_t" "$rss_growth" "$peak_kb"
    printf 'fds: %s at %s s, %s at %s s: %s%%; idle %s before the run, %s after\n' \
        "$start_fds" "$start_t" "$end_fds" "$end_t" "$fd_growth" "$idle_fds_before" "$idle_fds_after"
    if below "$rss_growth" 5; then pass "RSS growth $rss_growth% < 5%"; else fail "RSS growth $rss_growth% >= 5%"; fi
    if below "$fd_growth" 5; then pass "fd growth $fd_growth% < 5%"; else fail "fd growth $fd_growth% >= 5%"; fi
    if ((idle_fds_after <= idle_fds_before)); then
        pass "idle fds back to $idle_fds_after (before the run: $idle_fds_before)"
    else
        fail "idle fds $idle_fds_after after the run, $idle_fds_before before"
    fi
fi

echo
stop_server
trap - EXIT
if ((failures > 0)); then
    echo "soak.sh: $failures check(s) FAILED"
    exit 1
fi
echo "soak.sh: all checks passed"
