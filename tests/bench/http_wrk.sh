#!/usr/bin/env bash
# The HTTP benchmark: `wrk -t1 -c64` against GET /hello on the hand-written Beast
# server and on tame::http, one server thread each, taking turns, on loopback.
# The server is pinned to CPU 0 and wrk to CPU 1.
#
#   bash tests/bench/http_wrk.sh [rounds=5] [seconds=10] [extra tame server flags…]
#
# BASELINE=beast-strands compares with the hand-written server on strands.
#
# Needs the release build (cmake --workflow --preset release); installs wrk with
# apt-get when it is missing. Prints each run and the medians, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-5}
seconds=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
binary=build/release/tests/bench/tame_bench_http_servers
if [[ ! -x $binary ]]; then
    echo "http_wrk.sh: build the release preset first ($binary is missing)" >&2
    exit 1
fi
if ! command -v wrk > /dev/null; then
    sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get install -y -q wrk || { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q wrk; }
fi
pin_server=(); pin_wrk=()
if command -v taskset > /dev/null && [[ $(nproc) -ge 2 ]]; then
    pin_server=(taskset -c 0); pin_wrk=(taskset -c 1)
fi

port=18080
baseline=${BASELINE:-beast}
declare -A rps p99 cpu
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_one() { # server round [server flags…]
    local server=$1 round=$2
    shift 2
    "${pin_server[@]}" "$binary" "$server" --port $port --threads 1 "$@" 2>/dev/null &
    local pid=$!
    for _ in $(seq 50); do
        bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
        sleep 0.1
    done
    local out cpu_before cpu_after
    cpu_before=$(cpu_ticks $pid)
    out=$("${pin_wrk[@]}" wrk -t1 -c64 -d"${seconds}s" --latency "http://127.0.0.1:$port/hello")
    cpu_after=$(cpu_ticks $pid)
    kill -INT $pid; wait $pid 2>/dev/null || true
    local r l c
    r=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
    # The server's CPU time per request (user + system), steadier than req/s on a VM.
    c=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" -v n="$(awk '/requests in/ {print $1}' <<< "$out")" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    l=$(awk '$1 == "99%" {print $2}' <<< "$out")
    # wrk prints latencies with a unit: us, ms or s. Convert to microseconds.
    l=$(awk -v v="$l" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }')
    printf '%-13s round %d: %10.0f req/s   p99 %8.0f us   server CPU %6.2f us/request\n' "$server" "$round" "$r" "$l" "$c"
    rps[$server]+="$r "
    p99[$server]+="$l "
    cpu[$server]+="$c "
    port=$((port + 1))
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

for round in $(seq "$rounds"); do
    run_one "$baseline" "$round"
    run_one tame "$round" "$@"
done
beast_rps=$(median <<< "${rps[$baseline]}"); tame_rps=$(median <<< "${rps[tame]}")
beast_p99=$(median <<< "${p99[$baseline]}"); tame_p99=$(median <<< "${p99[tame]}")
beast_cpu=$(median <<< "${cpu[$baseline]}"); tame_cpu=$(median <<< "${cpu[tame]}")
printf '\nmedians: %s %.0f req/s, p99 %.0f us, %.2f us CPU/request; tame %.0f req/s, p99 %.0f us, %.2f us CPU/request\n' \
    "$baseline" "$beast_rps" "$beast_p99" "$beast_cpu" "$tame_rps" "$tame_p99" "$tame_cpu"
awk -v a="$tame_rps" -v b="$beast_rps" -v c="$tame_p99" -v d="$beast_p99" -v e="$tame_cpu" -v f="$beast_cpu" -v n="$baseline" \
    'BEGIN { printf "tame/%s: throughput %.3f (target >= 0.9), p99 %.3f (target <= 1.2), CPU per request %.3f\n", n, a / b, c / d, e / f }'
