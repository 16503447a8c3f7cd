#!/usr/bin/env python3
"""/diagnose against a dead upstream, with and without the breaker.

    python3 tests/bench/diagnose_upstream_bench.py [requests=200] [clients=20]

For each kind of dead upstream and each --breaker setting, starts the release
tame-samples on a free port, sends `requests` GET /diagnose from `clients`
threads at once, and prints the latency (median, p99, max) of the answers, how
they were answered, and how many calls reached the upstream:

  stalled   the embedded upstream never answers in time (--upstream-delay-ms
            3000 past --deadline-ms 2000): every call that is made times out
  refused   --upstream http://127.0.0.1:<closed port>/: every call that is
            made fails at once (connection refused)

Calls reaching the upstream come from the service's own counters
(tame_diagnose_upstream_calls_total), so the breaker's drops are not counted.
Needs the release build (cmake --workflow --preset release).
"""
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BINARY = os.path.join(ROOT, "build", "release", "apps", "tame-samples")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tame-samples exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("tame-samples did not listen")


def get(port, target, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", target)
        res = conn.getresponse()
        return res.status, res.read().decode()
    finally:
        conn.close()


def upstream_calls(port):
    _, text = get(port, "/metrics")
    return sum(
        float(m.group(1))
        for m in re.finditer(r'^tame_diagnose_upstream_calls_total\{[^}]*\} (\S+)$', text, re.M))


def run(kind, breaker, requests, clients):
    port = free_port()
    args = [BINARY, "--port", str(port), "--quiet", "--threads", "1", "--breaker", breaker,
            "--deadline-ms", "2000", "--upstream-delay-ms", "3000"]
    if kind == "refused":
        args += ["--upstream", f"http://127.0.0.1:{free_port()}/diagnoses"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process)
        latencies, statuses = [], {}
        lock = threading.Lock()
        remaining = [requests]

        def client():
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                start = time.monotonic()
                status, _ = get(port, "/diagnose?symptoms=fever")
                elapsed = time.monotonic() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"{kind:8} breaker {breaker:3}: median {statistics.median(latencies) * 1000:7.1f} ms"
              f"  p99 {p99 * 1000:7.1f} ms  max {latencies[-1] * 1000:7.1f} ms"
              f"  wall {wall:5.1f} s  upstream calls {upstream_calls(port):5.0f} / {requests}"
              f"  answers {dict(sorted(statuses.items()))}", flush=True)
    finally:
        process.terminate()
        process.wait()


def main():
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    if not os.path.exists(BINARY):
        raise SystemExit(f"{BINARY} is missing: cmake --workflow --preset release")
    for kind in ("stalled", "refused"):
        for breaker in ("on", "off"):
            run(kind, breaker, requests, clients)


if __name__ == "__main__":
    main()
