"""Request latency on a kept-alive connection to the executor daemon, against a fresh
connection per request.

The planner's HTTP client reuses its connections, so every poll of a job rides a
kept-alive one. Without ``TCP_NODELAY`` on the daemon's sockets, a response written in two
parts (headers, then body) waits for the client's delayed ACK (about 40 ms) before its
second part leaves: a reused connection was an order of magnitude slower than a new one.
This starts a real daemon (``annealplan-executor serve`` on a free loopback port), times
``GET /v1/health`` and ``GET /v1/jobs/{id}`` on one kept-alive connection and on a new
connection each (the baseline), and prints the medians and their ratio (below 1: reusing a
connection is the faster, as it should be).

    .venv/bin/python bench/keepalive.py [--requests 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import quick

#: ``--quick``: sizes that run in seconds (explicit flags still win)
QUICK = {"requests": 20}
TOKEN = "keepalive-bench-" + "k" * 32


def start_daemon(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    root = tmp / "root"
    (root / "model").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "a.jsonl").write_text('{"text": "a"}\n')
    token_file = tmp / "token"
    token_file.write_text(TOKEN)
    os.chmod(token_file, 0o600)
    port_file = tmp / "port.json"
    exe = Path(sys.executable).with_name("annealplan-executor")
    serve = ["serve", "--port", "0", "--port-file", str(port_file)]
    serve += ["--root", str(root), "--token-file", str(token_file)]
    proc = subprocess.Popen([str(exe), *serve], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_file.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the daemon did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"


def timed(get, paths: list[str], n: int) -> list[float]:
    """Seconds of each of ``n`` rounds of ``paths`` requests, per request."""
    out = []
    for _ in range(n):
        for path in paths:
            t = time.perf_counter()
            r = get(path)
            out.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="rounds of requests per mode")
    args = quick.parse_args(ap, QUICK)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_daemon(Path(tmp))
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as kept:
                source = {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 8}
                job = {"job_id": "poll", "base_model": "model", "source": source}
                kept.post("/v1/jobs", json=job).raise_for_status()
                kept.delete("/v1/jobs/poll").raise_for_status()  # a record to poll, not run
                paths = ["/v1/health", "/v1/jobs/poll"]
                timed(kept.get, paths, 3)  # warm up both modes' code paths

                # the same client, but no connection is kept: each request opens its own
                no_keep = httpx.Limits(max_keepalive_connections=0)
                with httpx.Client(
                    base_url=url, headers=headers, timeout=30, limits=no_keep
                ) as fresh_client:
                    fresh = timed(fresh_client.get, paths, args.requests)
                reused = timed(kept.get, paths, args.requests)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    f_ms, r_ms = statistics.median(fresh) * 1e3, statistics.median(reused) * 1e3
    print(f"{len(fresh)} requests per mode (GET /v1/health and GET /v1/jobs/ID, alternating)")
    print(f"a new connection per request (baseline): median {f_ms:.2f} ms")
    print(f"one kept-alive connection:              median {r_ms:.2f} ms")
    print(f"ratio kept-alive/new: {r_ms / f_ms:.3f}")


if __name__ == "__main__":
    main()
