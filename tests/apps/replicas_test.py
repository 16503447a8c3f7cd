#!/usr/bin/env python3
"""Two tame-samples replicas sharing one Redis (issue: beyond one machine).

Starts its own redis-server on a free loopback port and two tame-samples on
free ports, and checks what a user of --redis relies on:

  (a) the cap on running sync tasks holds over both replicas: two batches of
      100 tasks x 100 ms, one per replica, each at concurrency 10 under
      --max-running-tasks 10, take about 2 s together with --redis (one cap of
      10 for both) against about 1 s without (a cap of 10 each);
  (b) a job started on A is followed and cancelled through B;
  (c) A is killed (SIGKILL) while it holds every slot; B's batch then
      completes within one lease and a second, and A's job reads "lost".

Usage: replicas_test.py path/to/tame-samples
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BINARY = sys.argv[1]
LEASE_MS = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process, what, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {limit} s")


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tame-replicas-")
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")])
        wait_listening(self.port, self.process, "redis-server")
        self.url = f"redis://127.0.0.1:{self.port}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Replica:
    def __init__(self, name, redis_url=None):
        self.name = name
        self.port = free_port()
        args = [BINARY, "--port", str(self.port), "--threads", "2", "--quiet",
                "--max-running-tasks", "10", "--drain-ms", "0"]
        if redis_url:
            args += ["--redis", redis_url, "--lease-ms", str(LEASE_MS), "--instance", name]
        self.process = subprocess.Popen(args)
        wait_listening(self.port, self.process, name)

    def request(self, method, path, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path)
            res = conn.getresponse()
            body = res.read()
            return res.status, json.loads(body) if body else None
        finally:
            conn.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise SystemExit(f"{self.name} did not stop within 20 s of SIGTERM")


def check(condition, what):
    if not condition:
        raise SystemExit("FAILED: " + what)
    print("ok:", what, flush=True)


def eventually(probe, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"FAILED: {what} (not within {limit} s)")


def two_batches(a, b):
    """Runs one 100 x 100 ms batch on each replica at once; the wall time."""
    results = {}

    def run(replica):
        results[replica.name] = replica.request(
            "POST", "/sync-data?tasks=100&concurrency=10&task_ms=100")

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(r,)) for r in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    for name, (status, body) in results.items():
        check(status == 200, f"{name}'s batch succeeded ({status} {body})")
    return took


def scenario_a(redis):
    a, b = Replica("A"), Replica("B")
    try:
        alone = two_batches(a, b)
    finally:
        a.stop()
        b.stop()
    a, b = Replica("A", redis.url), Replica("B", redis.url)
    try:
        shared = two_batches(a, b)
    finally:
        a.stop()
        b.stop()
    print(f"(a) two batches at once: {alone:.2f} s with a cap per replica, "
          f"{shared:.2f} s with one cap shared through Redis", flush=True)
    # 200 tasks of 100 ms under one cap of 10 cannot take less than 2 s.
    check(shared >= 1.9, "the shared cap held over both replicas (>= 1.9 s)")
    check(alone < shared * 0.8, "without Redis each replica had a cap of its own")


def scenario_b(redis):
    a, b = Replica("A", redis.url), Replica("B", redis.url)
    try:
        status, started = a.request("POST", "/sync-data?async=1&tasks=100&concurrency=5&task_ms=100")
        check(status == 202, "A accepted an async job")
        job = "/jobs/" + started["id"]
        status, seen = b.request("GET", job)
        check(status == 200 and seen["state"] == "running", "B sees A's job running at once")
        eventually(lambda: b.request("GET", job)[1]["done"] > 0, 10, "B sees A's job progress")
        status, answer = b.request("DELETE", job)
        check(status == 202, f"B accepted the cancellation of A's job ({status} {answer})")
        ended = eventually(lambda: (lambda s: s if s["state"] != "running" else None)(
            b.request("GET", job)[1]), 10, "A's job ended after B's DELETE")
        check(ended["state"] == "cancelled", f"A's job reads cancelled on B ({ended})")
        check(a.request("GET", job)[1]["state"] == "cancelled", "A's job reads cancelled on A")
        check(ended["done"] < 100, "the job stopped before its end")
    finally:
        a.stop()
        b.stop()


def scenario_c(redis):
    a, b = Replica("A", redis.url), Replica("B", redis.url)
    try:
        status, started = a.request("POST", "/sync-data?async=1&tasks=10&concurrency=10&task_ms=60000")
        check(status == 202, "A started a job that holds every slot")
        job = "/jobs/" + started["id"]
        eventually(lambda: b.request("GET", job)[1]["peak_concurrency"] == 10, 10,
                   "A holds all 10 slots")
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        killed = time.monotonic()
        status, body = b.request("POST", "/sync-data?tasks=10&concurrency=10&task_ms=100")
        took = time.monotonic() - killed
        print(f"(c) B's batch completed {took:.2f} s after A was killed (lease {LEASE_MS} ms)",
              flush=True)
        check(status == 200, f"B's batch succeeded ({status} {body})")
        check(took < LEASE_MS / 1000 + 1 + 0.1, "within one lease and a second")
        lost = eventually(lambda: (lambda s: s if s["state"] == "lost" else None)(
            b.request("GET", job)[1]), LEASE_MS / 1000 + 2, "A's job reads lost on B")
        check("runner" in lost and lost["runner"] == "A", "the lost job names its runner")
    finally:
        a.stop()
        b.stop()


def main():
    redis = Redis()
    try:
        scenario_a(redis)
        scenario_b(redis)
        scenario_c(redis)
    finally:
        redis.stop()
    print("replicas: all scenarios passed")


if __name__ == "__main__":
    main()
