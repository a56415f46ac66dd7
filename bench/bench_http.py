"""HTTP surface under issue 20.1's attacks: memory, threads and a good request's latency.

Starts the controller's webhook and metrics servers (reconciler/controller/httpserver.py, the
limits ``cuctl run`` uses) in a child process and, on loopback only, sends what the issue
sent: three unauthenticated 200 MB bodies (declared, ``Content-Length: -1`` and chunked),
then 300 slowloris connections dripping header bytes, measuring the child's peak RSS and
thread count and the time a signed push webhook takes meanwhile. Bounded: every attack stops
after ``--seconds``.

    .venv/bin/python bench/bench_http.py --seconds 15
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SECRET = b"bench-secret"
CHILD = """
import sys, threading, time
from reconciler.controller import metrics, webhook
m = metrics.Metrics()
hook = webhook.serve(0, b"bench-secret", "main", lambda: None, host="127.0.0.1")
mx = metrics.serve(m, 0, ready=lambda: True, healthy=lambda: True)
print(hook.port, mx.port, flush=True)
sys.stdin.read()
"""


def _proc(pid: int) -> tuple[int, int]:
    """(peak RSS in KiB, threads) of a process."""
    text = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]), int(fields["Threads"])


def _flood(port: int, head: bytes, body_bytes: int, deadline: float) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(head)
        chunk = b"Z" * 65536
        sent = 0
        while sent < body_bytes and time.monotonic() < deadline:
            s.sendall(chunk)
            sent += len(chunk)


def _signed_push(port: int) -> float:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    head = (
        f"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"X-Hub-Signature-256: {sig}\r\nConnection: close\r\n\r\n"
    ).encode()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(head + body)
        answer = s.recv(100)
    if not answer.startswith(b"HTTP/1.1 202"):
        raise RuntimeError(f"push refused: {answer!r}")
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert child.stdout is not None and child.stdin is not None
    hook, _ = (int(x) for x in child.stdout.readline().split())
    base_rss, base_threads = _proc(child.pid)
    results: dict[str, object] = {"idle_rss_mb": round(base_rss / 1024, 1)}
    size = 200 * 1024 * 1024
    for name, head in (
        ("content-length", f"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"),
        ("negative", "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        ("chunked", "POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ):
        deadline = time.monotonic() + args.seconds / 3
        threads = [
            threading.Thread(target=_flood, args=(hook, head.encode(), size, deadline))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results[f"{name}_peak_rss_mb"] = round(_proc(child.pid)[0] / 1024, 1)
    conns: list[socket.socket] = []
    for _ in range(300):
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", hook), 5)
            s.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\n")
            conns.append(s)
    deadline = time.monotonic() + args.seconds / 2
    latencies = []
    while time.monotonic() < deadline:
        for s in conns:
            with contextlib.suppress(OSError):
                s.send(b"X")
        with contextlib.suppress(OSError, RuntimeError):
            latencies.append(_signed_push(hook))
        time.sleep(0.5)
    rss, threads_now = _proc(child.pid)
    for s in conns:
        s.close()
    results.update(
        {
            "slowloris_connections": len(conns),
            "peak_rss_mb": round(rss / 1024, 1),
            "threads_idle": base_threads,
            "threads_under_slowloris": threads_now,
            "signed_pushes_answered": len(latencies),
            "push_p50_ms": round(sorted(latencies)[len(latencies) // 2] * 1000, 1)
            if latencies
            else None,
        }
    )
    child.stdin.close()
    child.wait(10)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
