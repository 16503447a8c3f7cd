#!/usr/bin/env bash
# Hostile clients against tame-samples (issue 7): starts the binary on a free
# port, runs attacks.py against it (slowloris, slow bodies, a connection flood,
# oversized and malformed requests, leak checks), then stops it with SIGTERM and
# checks that it exits with 0.
#
#   bash tests/attacks/run_attacks.sh path/to/tame-samples [scale=1]
#
# Scale 1 is the CI form: about 20 s, at most 90 s. A larger scale raises
# --max-connections (200 x scale) and with it the slow clients and the flood,
# and also waits for the 30 s body timeout and holds the flood past the 10 s
# header timeout (about 60 s).
#
# Needs python3 (installed with apt-get when missing). Exits with 0 only when
# every check passed and the server shut down cleanly.
set -euo pipefail

binary=${1:?usage: run_attacks.sh path/to/tame-samples [scale=1]}
scale=${2:-1}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../support/samples_server.sh
source "$here/../support/samples_server.sh"
max_connections=$((200 * scale))

# The flood holds 2 x max-connections sockets in attacks.py, and the server
# inherits this shell's limit.
raise_fd_limit() {
    local want=$((4 * max_connections + 1024))
    if (( $(ulimit -n) < want )); then
        ulimit -n "$want" 2> /dev/null || ulimit -n "$(ulimit -Hn)"
    fi
}

# SIGTERM must end the server with status 0 within its drain (2 s) and some slack.
stop_server() {
    local status=0
    stop_samples || status=$?
    if ((status == 124)); then
        echo "FAIL SIGTERM: the server did not exit within 15 s"
        return 1
    fi
    if ((status != 0)); then
        echo "FAIL SIGTERM: the server exited with status $status"
        return 1
    fi
    echo "PASS SIGTERM: exit status 0 ($(grep -o 'stopped.*' "$log" || echo 'no stop line'))"
}

# With --quiet the server writes only its start and stop lines and its own
# complaints (a handler that threw, a connection that ended with an exception).
check_server_log() {
    local complaints
    complaints=$(grep -v -e 'listening on' -e 'SIGTERM received' -e 'stopped' "$log" || true)
    if [[ -n $complaints ]]; then
        echo "FAIL server log: unexpected lines on stderr:"
        head -20 <<< "$complaints"
        return 1
    fi
    echo "PASS server log: no complaints on stderr"
}

install_missing python3
raise_fd_limit
log=$(mktemp)
pid=
port=
trap 'if [[ -n $pid ]]; then kill -KILL "$pid" 2> /dev/null || true; fi; rm -f "$log"' EXIT

started=$SECONDS
start_samples "$binary" "$log" --quiet --threads 2 --report-ms 5 --task-ms 1 --upstream-delay-ms 50 \
    --drain-ms 2000 --max-connections "$max_connections"
wait_for_healthz
echo "run_attacks.sh: tame-samples pid $pid on port $port, --max-connections $max_connections, scale $scale"

status=0
# The load generator yields the CPU to the server (and to anyone compiling).
# The timeout bounds a hung server: 70 s at scale 1, so that with the start and
# the stop (15 s at most) the CI form stays within 90 s.
nice -n 10 timeout $((10 + 60 * scale)) python3 "$here/attacks.py" --port "$port" --pid "$pid" \
    --max-connections "$max_connections" --scale "$scale" || status=$?
if (( status == 124 )); then
    echo "FAIL attacks.py did not finish in time"
fi
stop_server || status=1
check_server_log || status=1
echo "run_attacks.sh: $( ((status == 0)) && echo 'all checks passed' || echo 'FAILED') in $((SECONDS - started)) s"
exit "$status"
