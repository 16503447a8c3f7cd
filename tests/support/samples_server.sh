# shellcheck shell=bash
# Sourced by the scripts that drive a running tame-samples (tests/attacks,
# tests/soak): install a missing tool, start the server on a free port, wait for
# /healthz, stop it with SIGTERM. They set and read the globals `pid` and `port`.
# Callers use `set -euo pipefail` and trap EXIT to kill "$pid" if it is set.

# install_missing COMMAND [PACKAGE]: apt-get installs PACKAGE (default: COMMAND)
# unless COMMAND is already on the PATH; sudo only when not root.
install_missing() {
    command -v "$1" > /dev/null && return
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get install -y -q "${2:-$1}" ||
        { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q "${2:-$1}"; }
}

# start_samples BINARY LOG [FLAGS...]: starts BINARY --port 0 FLAGS with stderr
# in LOG, and sets pid and port. --port 0 lets the kernel pick a free port,
# race-free; the server logs it: "...: listening on http://127.0.0.1:PORT with ...".
start_samples() {
    local binary=$1 log=$2
    shift 2
    "$binary" --port 0 "$@" 2> "$log" &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on http://[^ ]*:\([0-9]*\) .*|\1|p' "$log")
        [[ -n $port ]] && return
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.05
    done
    echo "$(basename "$0"): the server did not start:" >&2
    cat "$log" >&2
    exit 1
}

# http_get TARGET: the whole answer, over bash's /dev/tcp (nothing to install).
http_get() {
    timeout 5 bash -c "exec 3<> /dev/tcp/127.0.0.1/$port &&
        printf 'GET $1 HTTP/1.1\r\nHost: tame-test\r\nConnection: close\r\n\r\n' >&3 && cat <&3"
}

wait_for_healthz() {
    for _ in $(seq 50); do
        http_get /healthz 2> /dev/null | head -1 | grep -q ' 200 ' && return
        sleep 0.1
    done
    echo "$(basename "$0"): no /healthz answer on port $port" >&2
    exit 1
}

# stop_samples: SIGTERM, then waits up to 15 s; returns the exit status, or 124
# when the server did not exit (it is then killed). Clears pid.
stop_samples() {
    kill -TERM "$pid"
    for _ in $(seq 150); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    local status=0 killed=0
    if kill -0 "$pid" 2> /dev/null; then
        kill -KILL "$pid"
        killed=1
    fi
    wait "$pid" 2> /dev/null || status=$?
    pid=
    if ((killed)); then
        return 124
    fi
    return "$status"
}
