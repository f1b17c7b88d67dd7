"""The search service under load: N requests at C concurrent connections, a share of them malformed, per
method, on a run folder; the server started as a user would (``genir serve``). Counts answers by status,
connections reset or left unanswered, and reports p50 / p99 latency and requests/s of the well-formed
requests. ``--old REV`` measures the stdlib server of an earlier commit (one lock around every search) on
the same folder and queries, in the same run, for the ratio.

    python bench/serve_load.py --run runs/scifact --method dsi-semantic --method bm25 \\
        --requests 10000 --concurrency 50 --old dc2f501 --old-requests 2000

``--set search.encoder_precision=bf16`` also measures every method on a server started with that setting.
``--side-by-side N`` also measures N searches of every ``--method`` at once (the page's search), with the
methods' query encoders shared and not, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def malformed(rng: random.Random, method: str) -> bytes:
    """One of the ways a client gets a request wrong."""
    m = urllib.parse.quote(method)
    kind = rng.randrange(8)
    if kind == 0:
        return f"GET /search?q=cells&k=0&method={m} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    if kind == 1:
        return f"GET /search?q=cells&k=ten&method={m} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    if kind == 2:
        return f"GET /search?k=5&method={m} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    if kind == 3:
        return f"GET /search?q=cells&k=5000&method={m} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    if kind == 4:
        body = b"{not json"
    elif kind == 5:
        body = json.dumps({"queries": ["not", "a", "map"], "method": method}).encode()
    elif kind == 6:
        return (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: 100000000000\r\n\r\n{}")
    else:
        return b"GET /no/such/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    return (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def wellformed(query: str, method: str | None, k: int = 10) -> bytes:
    """A search of one method, or of every served method side by side (``method`` None)."""
    q = urllib.parse.urlencode({"q": query, "k": k, **({"method": method} if method else {})})
    return f"GET /search?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


async def one(port: int, payload: bytes, timeout: float) -> tuple[str, float]:
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "no-answer"
    except (ConnectionResetError, BrokenPipeError):
        status = "reset"
    except (TimeoutError, asyncio.TimeoutError):
        status = "timeout"
    except OSError as e:
        status = f"error:{e.errno}"
    return status, time.perf_counter() - start


async def load(port: int, queries: list[str], method: str, n: int, concurrency: int, bad_share: float,
               seed: int = 0, timeout: float = 60) -> dict:
    rng = random.Random(seed)
    plan = [(False, malformed(rng, method)) if rng.random() < bad_share
            else (True, wellformed(queries[i % len(queries)], method)) for i in range(n)]
    results: list[tuple[bool, str, float]] = []
    position = 0

    async def worker():
        nonlocal position
        while position < len(plan):
            good, payload = plan[position]
            position += 1
            status, seconds = await one(port, payload, timeout)
            results.append((good, status, seconds))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    good = sorted(s for ok, st, s in results if ok and st == "200")
    statuses = Counter(st for _, st, _ in results)
    return {"method": method, "requests": n, "concurrency": concurrency, "wall_s": wall,
            "requests_per_s": n / wall, "ok_per_s": len(good) / wall,
            "p50_ms": 1000 * statistics.median(good) if good else None,
            "p99_ms": 1000 * good[int(0.99 * (len(good) - 1))] if good else None,
            "statuses": dict(sorted(statuses.items())),
            "5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
            "reset_or_unanswered": sum(v for k, v in statuses.items() if not k.isdigit()),
            "wellformed_not_200": sum(1 for ok, st, _ in results if ok and st != "200")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            sys.exit(f"the server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
            return
        except OSError:
            time.sleep(1)
    sys.exit("the server did not come up")


OLD_SERVER = """
import sys, importlib.util
spec = importlib.util.spec_from_file_location("old_serve", sys.argv[1])
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
from genir.retriever import Retriever
from genir.search.bm25 import BM25Searcher
folder = sys.argv[2]
searcher = Retriever.load(folder).searcher
server = old.make_server(searcher, "127.0.0.1", int(sys.argv[3]))
# the old server answered /health only after the searcher was built: the same readiness signal
server.serve_forever()
"""


@contextlib.contextmanager
def running(cmd: list[str], port: int, env: dict):
    """A server process started by ``cmd``, answering on ``port`` within the block, stopped after it."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_up(port, proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def side_by_side(cmd: list[str], port: int, queries: list[str], args, env: dict) -> list[dict]:
    """Every method side by side (GET /search without method=), shared query encoders on and off."""
    rows = []
    for shared in (False, True):
        with running(cmd + (["--shared-encoders"] if shared else ["--no-shared-encoders"]), port, env):
            asyncio.run(load(port, queries, None, 100, args.concurrency, 0.0, seed=1))  # warm-up
            r = asyncio.run(load(port, queries, None, args.side_by_side, args.concurrency, 0.0))
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read())
            r["method"] = "side by side: " + ", ".join(args.method)
            r["server"] = f"genir serve, {'shared' if shared else 'separate'} query encoders"
            r["shared_encoders"] = health["shared_encoders"]
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--method", action="append", required=True)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--malformed", type=float, default=0.1)
    ap.add_argument("--old", help="a commit whose src/genir/serve.py (stdlib server) is measured too")
    ap.add_argument("--old-requests", type=int, default=2000)
    ap.add_argument("--side-by-side", type=int, default=0, metavar="N",
                    help="also N searches of every --method side by side (the page's search), the server with "
                         "shared query encoders and without, in the same run")
    ap.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                    help="also measure every --method on a server started with these search settings (genir serve "
                         "--set), in the same run")
    ap.add_argument("--out", default=None, help="JSON results (default: print only)")
    args = ap.parse_args()
    from genir.live import LiveIndex

    run = Path(args.run)
    index = LiveIndex(run, [m for m in args.method if m not in ("bm25", "dense")], baselines=())
    split = index.settings.data.test_split
    queries = [index.collection.queries[q] for q in index.collection.qrels[split]]
    rows = []
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "genir.cli", "serve", str(run), "--port", str(port), "--baseline", "none"]
    methods = [m for m in args.method if m not in ("bm25", "dense")]
    baselines = [m for m in args.method if m in ("bm25", "dense")]
    for m in methods:
        cmd += ["--method", m]
    if baselines:
        cmd = [c for c in cmd if c not in ("--baseline", "none")] + [x for b in baselines for x in ("--baseline", b)]
    if args.side_by_side:
        rows += side_by_side(cmd, port, queries, args, env)
    variants = [[]] + ([[x for item in args.set for x in ("--set", item)]] if args.set else [])
    for extra in variants:
        with running(cmd + extra, port, env):
            for m in args.method if args.requests else []:
                asyncio.run(load(port, queries, m, 200, args.concurrency, 0.0, seed=1))  # warm-up
                r = asyncio.run(load(port, queries, m, args.requests, args.concurrency, args.malformed))
                r["server"] = "genir serve (FastAPI + uvicorn, micro-batched)" + (
                    f", {', '.join(args.set)}" if extra else "")
                rows.append(r)
                print(json.dumps(r), flush=True)
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read())
            print("batch sizes:", json.dumps(health["batches"]), flush=True)
    if args.old:
        source = subprocess.run(["git", "show", f"{args.old}:src/genir/serve.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
        old_file = Path(f"/tmp/genir_old_serve_{args.old}.py")
        old_file.write_text(source)
        for m in methods[:1]:
            port = free_port()
            with running([sys.executable, "-c", OLD_SERVER, str(old_file), str(run / m), str(port)], port, env):
                asyncio.run(load(port, queries, m, 100, args.concurrency, 0.0, seed=1))
                for conc in (32, args.concurrency):
                    r = asyncio.run(load(port, queries, m, args.old_requests, conc, args.malformed))
                    r["server"] = f"stdlib server of {args.old} (one lock)"
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print("\n| server | method | requests | concurrent | requests/s | p50 ms | p99 ms | 5xx | reset/unanswered |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['method']} | {r['requests']:,} | {r['concurrency']} | {r['requests_per_s']:.1f} | "
              f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['5xx']} | {r['reset_or_unanswered']} |")


if __name__ == "__main__":
    main()
