"""The GIL is released while a call waits, Ctrl-C interrupts a wait, and a Cache is
not used across fork."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import readthrough
from conftest import WAIT, blob


def test_two_waiting_reads_run_at_once(cache_dir):
    # Each origin call returns only once both are running: with the GIL held by a
    # waiting reader, the other origin call could never start.
    both = threading.Barrier(2, timeout=WAIT)

    def origin(key: str) -> bytes:
        both.wait()
        return key.encode()

    cache = readthrough.Cache(cache_dir, origin=origin)
    results = {}
    readers = [threading.Thread(target=lambda k=k: results.update({k: cache.get_bytes(k)})) for k in ("a", "b")]
    for t in readers:
        t.start()
    for t in readers:
        t.join(WAIT)
    assert results == {"a": b"a", "b": b"b"}


def test_a_hit_is_served_while_another_read_waits(origin, cache_dir):
    route = origin.serve("/slow", blob(10_000), hold_at=10)
    origin.serve("/fast", b"fast")
    cache = readthrough.Cache(cache_dir)
    cache.get_bytes(origin.url("/fast"))
    slow = threading.Thread(target=cache.get_bytes, args=(origin.url("/slow"),))
    slow.start()
    # The server's thread runs Python to answer, while `slow` waits in the cache.
    assert route.arrived.wait(WAIT)
    hits = [cache.get_bytes(origin.url("/fast")) for _ in range(3)]
    assert hits == [b"fast"] * 3 and slow.is_alive()
    route.release.set()
    slow.join(WAIT)
    assert cache.contains(origin.url("/slow"))


def test_ctrl_c_interrupts_a_wait(origin, cache_dir):
    route = origin.serve("/held", blob(10_000), hold_at=10)
    script = (
        "import sys, readthrough\n"
        "cache = readthrough.Cache(sys.argv[1])\n"
        "try:\n"
        "    cache.get_bytes(sys.argv[2])\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, cache_dir, origin.url("/held")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert route.arrived.wait(WAIT)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=WAIT)
    assert (out, child.returncode) == ("interrupted\n", 0)


def test_a_cache_made_before_fork_refuses_and_a_new_one_works(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"parent's")
    cache.get_bytes("k")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                cache.get_bytes("k")
                verdict = "used"
            except readthrough.Error as e:
                verdict = "fork" in str(e) and "refused"
            child = readthrough.Cache(cache_dir, origin=lambda key: b"child's")
            verdict = f"{verdict} {child.get_bytes('k').decode()} {child.get_bytes('new').decode()}"
            os.write(write, verdict.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        verdict = pipe.read()
    os.waitpid(pid, 0)
    assert verdict == "refused parent's child's"
