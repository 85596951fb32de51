"""One origin request for one cold key, however many processes and threads read it,
and the command-line tool in the same fill."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import threading

import pytest
import workers
from conftest import WAIT, blob, cli

PROCESSES = 8
THREADS = 16


def gather(queue, count: int, what: str) -> list:
    """`count` reports of kind `what` from the readers."""
    got = []
    for _ in range(count):
        kind, value = queue.get(timeout=WAIT)
        assert kind == what, f"a reader reported {kind}: {value}"
        got.append(value)
    return got


def start_readers(cache_dir: str, url: str, queue) -> list:
    """8 processes and 16 threads (sharing one cache) reading `url`."""
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=workers.open_and_read, args=(cache_dir, url, queue)) for _ in range(PROCESSES)]
    threads = [threading.Thread(target=workers.open_and_read, args=(cache_dir, url, queue)) for _ in range(THREADS)]
    for reader in procs + threads:
        reader.start()
    return procs + threads


def finish(readers: list) -> None:
    for reader in readers:
        reader.join(WAIT)
    for reader in readers:
        if isinstance(reader, multiprocessing.process.BaseProcess):
            assert reader.exitcode == 0


def test_processes_and_threads_on_one_cold_url_make_one_request(origin, cache_dir):
    body = blob(3 << 20)
    route = origin.serve("/model.bin", body, hold_at=64 << 10)
    url = origin.url("/model.bin")
    queue = multiprocessing.get_context("spawn").Queue()
    readers = start_readers(cache_dir, url, queue)

    # Every reader has opened the blob while the origin still holds most of the body back.
    kinds = gather(queue, PROCESSES + THREADS, "kind")
    assert kinds.count("led") == 1, kinds
    assert "hit" not in kinds, kinds
    route.release.set()

    digests = gather(queue, PROCESSES + THREADS, "sha256")
    finish(readers)
    assert set(digests) == {hashlib.sha256(body).hexdigest()}
    assert origin.requests["/model.bin"] == 1


def test_cli_and_python_share_one_fill(origin, cache_dir):
    binary = cli()
    if binary is None:
        if os.environ.get("READTHROUGH_REQUIRE_CLI"):
            pytest.fail("READTHROUGH_REQUIRE_CLI is set but no readthrough binary was found")
        pytest.skip("no readthrough binary: build the root crate, or set READTHROUGH_CLI")
    body = blob(1 << 20, seed=7)
    route = origin.serve("/shared.bin", body, hold_at=4096)
    url = origin.url("/shared.bin")
    out = os.path.join(os.path.dirname(cache_dir), "cli.out")
    command = [binary, "--cache-dir", cache_dir, "-q", "get", url, "-o", out]
    tool = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The tool leads: its request is the one the origin is holding.
    assert route.arrived.wait(WAIT)

    queue = multiprocessing.get_context("spawn").Queue()
    readers = start_readers(cache_dir, url, queue)
    kinds = gather(queue, PROCESSES + THREADS, "kind")
    assert "led" not in kinds and "hit" not in kinds, kinds
    route.release.set()

    digests = gather(queue, PROCESSES + THREADS, "sha256")
    finish(readers)
    _, errors = tool.communicate(timeout=WAIT)
    assert tool.returncode == 0, errors
    assert set(digests) == {hashlib.sha256(body).hexdigest()}
    with open(out, "rb") as f:
        assert f.read() == body
    assert origin.requests["/shared.bin"] == 1

