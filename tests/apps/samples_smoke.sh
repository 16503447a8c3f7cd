#!/usr/bin/env bash
# End to end, as a user runs it: starts a tame-samples binary on a free port,
# calls each service over real HTTP (bash's /dev/tcp, so nothing to install),
# then stops it with SIGTERM and checks that it shut down cleanly.
#
#   bash tests/apps/samples_smoke.sh path/to/tame-samples
set -euo pipefail

binary=$1
log=$(mktemp)
"$binary" --port 0 --threads 2 --tasks 20 --task-ms 5 --report-ms 5 --fail-ids 2 \
    --upstream-delay-ms 2000 --deadline-ms 100 2> "$log" &
pid=$!
trap 'kill -KILL $pid 2> /dev/null || true; rm -f "$log"' EXIT

port=
for _ in $(seq 200); do
    port=$(sed -n 's|.*listening on http://[^ ]*:\([0-9]*\) .*|\1|p' "$log")
    [[ -n $port ]] && break
    sleep 0.05
done
[[ -n $port ]] || { echo "samples_smoke: the server did not start"; cat "$log"; exit 1; }

# request METHOD TARGET [BODY]: the whole answer, status line first.
request() {
    exec 3<> "/dev/tcp/127.0.0.1/$port"
    printf '%s %s HTTP/1.1\r\nHost: smoke\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
        "$1" "$2" "${#3}" "$3" >&3
    timeout 10 cat <&3
    exec 3<&-
}

# expect CODE METHOD TARGET [BODY] [TEXT]: the answer has status CODE (and TEXT).
expect() {
    local out code
    out=$(request "$2" "$3" "${4:-}")
    code=$(head -1 <<< "$out" | awk '{print $2}')
    if [[ $code != "$1" || ( -n ${5:-} && $out != *"$5"* ) ]]; then
        echo "FAIL: $2 $3 answered ${code:-nothing}, expected $1 ${5:+with $5}"
        echo "$out"
        exit 1
    fi
    echo "ok   $code $2 $3   $(tail -1 <<< "$out" | cut -c1-120)"
}

expect 200 POST /sync-data '' '"peak_concurrency":10'
expect 202 POST '/sync-data?async=1' '' '"state":"running"'
expect 400 POST '/sync-data?tasks=0' '' 'query parameter tasks'
expect 200 POST /reports/generate '{"reportIds":[1,2,3]}' '"generated":2'
expect 400 POST /reports/generate '{"reportIds":[0]}' 'positive integer'
expect 408 GET '/diagnose?symptoms=fever' '' 'did not answer within 100 ms'
expect 404 GET /jobs/nope
expect 200 GET /healthz
expect 200 GET /metrics '' 'tame_pool_capacity{pool="reports"} 100'

kill -TERM $pid
status=0
wait $pid || status=$?
if [[ $status -ne 0 ]] || ! grep -q 'stopped' "$log"; then
    echo "FAIL: after SIGTERM the server exited with $status"
    cat "$log"
    exit 1
fi
echo "ok   SIGTERM: $(grep stopped "$log")"
