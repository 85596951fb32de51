"""The Python package against plain Python, each pair alternated in one run.

1. `cache.path(url)` on a hit, against `os.stat` of the stored file.
2. Reading a 256 MiB hit whole: `cache.open(url).read()` and `cache.get_bytes(url)`,
   against `open(file, "rb").read()` of the stored file.
3. 8 processes on one cold URL behind a throttled loopback origin: each reads the
   whole body through `readthrough`, against the Hugging Face Hub's way, a `filelock`
   around a download to a temporary file that is renamed into place, after which every
   process reads the file. Reported: the time until the last process has every byte,
   the median time to a process's first byte, and the origin's request count.

Run it through `benches/python.sh`, which builds a release package into a venv of its
own. Prints one line per figure, and the ratios (readthrough over the baseline; below 1
is faster for a time).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Tuple

import readthrough

MIB = 1 << 20


class Origin(ThreadingHTTPServer):
    """Serves bodies from memory at a fixed rate, counting requests per path."""

    daemon_threads = True

    def __init__(self, rate: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.rate = rate
        self.bodies: Dict[str, bytes] = {}
        self.requests: Dict[str, int] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        origin: Origin = self.server  # type: ignore[assignment]
        with origin.lock:
            origin.requests[self.path] = origin.requests.get(self.path, 0) + 1
        body = origin.bodies.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
        self.end_headers()
        step = 256 * 1024
        started = time.monotonic()
        for offset in range(0, len(body), step):
            if origin.rate:
                due = started + offset / origin.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            self.wfile.write(body[offset : offset + step])

    def log_message(self, *args: object) -> None:
        pass


def median_of(rounds: int, first: Callable[[], float], second: Callable[[], float]) -> Tuple[float, float]:
    """Runs the two alternately, `rounds` times each, and returns their median times."""
    a: List[float] = []
    b: List[float] = []
    for _ in range(rounds):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def timed(action: Callable[[], object], repeat: int = 1) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        for _ in range(repeat):
            action()
        return (time.perf_counter() - started) / repeat

    return run


def report(name: str, ours: float, theirs: float, unit: str, scale: float, baseline: str) -> None:
    print(
        f"{name}: readthrough {ours * scale:.2f} {unit}, {baseline} {theirs * scale:.2f} {unit},"
        f" ratio {ours / theirs:.2f}"
    )


def bench_path(cache: readthrough.Cache, url: str, rounds: int) -> None:
    stored = cache.path(url)
    calls = 20_000
    ours, theirs = median_of(
        rounds, timed(lambda: cache.path(url), calls), timed(lambda: os.stat(stored), calls)
    )
    report("path of a hit", ours, theirs, "us", 1e6, "os.stat")


def bench_read(cache: readthrough.Cache, url: str, rounds: int) -> None:
    stored = cache.path(url)

    def through_open() -> bytes:
        with cache.open(url) as f:
            return f.read()

    def plain() -> bytes:
        with open(stored, "rb") as f:
            return f.read()

    size = os.path.getsize(stored)
    for name, ours in (("open().read()", through_open), ("get_bytes", lambda: cache.get_bytes(url))):
        assert len(ours()) == size
        mine, base = median_of(rounds, timed(ours), timed(plain))
        print(
            f"256 MiB hit, {name}: readthrough {size / mine / MIB:.0f} MiB/s,"
            f" open().read() {size / base / MIB:.0f} MiB/s, ratio {base / mine:.2f} of its speed"
        )


def read_whole(f, began: float) -> Tuple[float, float, str]:
    """Reads `f` to its end in 1 MiB reads; the times of its first byte and of its end
    since `began`, and the SHA-256 of its bytes."""
    digest = hashlib.sha256()
    first = None
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        if first is None:
            first = time.monotonic()
        digest.update(chunk)
    return first - began, time.monotonic() - began, digest.hexdigest()


def read_through(directory: str, url: str, start: multiprocessing.Barrier, out: "multiprocessing.Queue") -> None:
    cache = readthrough.Cache(directory)
    start.wait()
    began = time.monotonic()
    with cache.open(url) as f:
        out.put(read_whole(f, began))


def read_under_filelock(directory: str, url: str, start: multiprocessing.Barrier, out: "multiprocessing.Queue") -> None:
    from filelock import FileLock

    target = os.path.join(directory, "blob")
    start.wait()
    began = time.monotonic()
    with FileLock(target + ".lock"):
        if not os.path.exists(target):
            fd, tmp = tempfile.mkstemp(dir=directory)
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url) as body:
                shutil.copyfileobj(body, f, 1 << 20)
            os.replace(tmp, target)
    with open(target, "rb") as f:
        out.put(read_whole(f, began))


def fan_out(worker: Callable, origin: Origin, path: str, processes: int) -> Tuple[float, float, int]:
    """Runs `processes` workers on a fresh directory and a fresh key; returns the last
    finish, the median first byte, and the requests the origin got."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    out = context.Queue()
    with tempfile.TemporaryDirectory() as directory:
        workers = [
            context.Process(target=worker, args=(directory, origin.url(path), start, out))
            for _ in range(processes)
        ]
        for w in workers:
            w.start()
        results = [out.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
    expected = hashlib.sha256(origin.bodies[path]).hexdigest()
    if any(digest != expected for _, _, digest in results):
        raise SystemExit(f"{worker.__name__}: a process read wrong bytes")
    firsts = [first for first, _, _ in results]
    return max(last for _, last, _ in results), statistics.median(firsts), origin.requests[path]


def bench_cold(rate: int, size: int, processes: int, rounds: int) -> None:
    try:
        import filelock  # noqa: F401
    except ImportError:
        print("8 processes cold: skipped, filelock is not installed")
        return
    origin = Origin(rate)
    body = os.urandom(size)
    ours: List[Tuple[float, float, int]] = []
    theirs: List[Tuple[float, float, int]] = []
    for round_ in range(rounds):
        for name, worker, results in (("rt", read_through, ours), ("fl", read_under_filelock, theirs)):
            path = f"/{name}/{round_}"
            origin.bodies[path] = body
            results.append(fan_out(worker, origin, path, processes))
    for i, label in ((0, "all done"), (1, "median first byte")):
        mine = statistics.median(r[i] for r in ours)
        base = statistics.median(r[i] for r in theirs)
        report(f"{processes} processes cold, {label}", mine, base, "ms", 1e3, "filelock")
    print(
        f"{processes} processes cold, origin requests per round: readthrough"
        f" {[r[2] for r in ours]}, filelock {[r[2] for r in theirs]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256, help="the large hit's size")
    parser.add_argument("--cold-mib", type=int, default=64, help="the cold blob's size")
    parser.add_argument("--rate-mib", type=int, default=128, help="the origin's rate for the cold blob")
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()

    origin = Origin(0)
    origin.bodies["/small"] = os.urandom(4096)
    origin.bodies["/large"] = os.urandom(args.size_mib * MIB)
    with tempfile.TemporaryDirectory() as directory:
        cache = readthrough.Cache(directory)
        bench_path(cache, origin.url("/small"), args.rounds)
        bench_read(cache, origin.url("/large"), args.rounds)
    bench_cold(args.rate_mib * MIB, args.cold_mib * MIB, args.processes, max(1, args.rounds // 2 + 1))
    origin.shutdown()


if __name__ == "__main__":
    main()
