"""The GIL is released while a call waits, Ctrl-C interrupts a wait, and a Cache is
not used across fork."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import readthrough
from conftest import WAIT, blob


GIL_SCRIPT = """
import sys, threading, readthrough
# Each origin call returns only once both are running: were the GIL held by a waiting
# reader, the other origin call could never start, and this process would hang.
both = threading.Barrier(2, timeout=float(sys.argv[2]))
def origin(key):
    both.wait()
    return key.encode()
cache = readthrough.Cache(sys.argv[1], origin=origin)
results = {}
readers = [threading.Thread(target=lambda k=k: results.update({k: cache.get_bytes(k)})) for k in "ab"]
for t in readers:
    t.start()
for t in readers:
    t.join()
print(sorted(results.items()))
"""


def test_two_waiting_reads_run_at_once(cache_dir):
    # In a child process, so that a GIL held while waiting fails the test (a hang,
    # ended by the timeout) instead of hanging the test run.
    done = subprocess.run(
        [sys.executable, "-c", GIL_SCRIPT, cache_dir, str(WAIT)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert (done.stdout, done.returncode) == ("[('a', b'a'), ('b', b'b')]\n", 0), done.stderr


def reader_child(lines: list, cache_dir: str, url: str) -> subprocess.Popen:
    """A Python process running `lines` with a cache on `cache_dir` as `cache` and
    `url` as `url`, its stdin and stdout piped."""
    script = "\n".join(["import sys, readthrough", "cache = readthrough.Cache(sys.argv[1])", "url = sys.argv[2]", *lines])
    return subprocess.Popen(
        [sys.executable, "-c", script, cache_dir, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_interrupts_a_wait(origin, cache_dir):
    route = origin.serve("/held", blob(10_000), hold_at=10)
    lines = [
        "try:",
        "    cache.get_bytes(url)",
        "except KeyboardInterrupt:",
        "    print('interrupted', flush=True)",
    ]
    child = reader_child(lines, cache_dir, origin.url("/held"))
    assert route.arrived.wait(WAIT)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=WAIT)
    assert (out, child.returncode) == ("interrupted\n", 0)


def test_ctrl_c_in_a_read_loses_no_byte(origin, cache_dir):
    body = blob(100_000, seed=9)
    route = origin.serve("/held", body, hold_at=10)
    # The signal may land just before the read or inside its wait (the origin holds
    # the body after 10 bytes, so the read cannot finish first): either way the
    # interrupt is raised, and no byte is lost.
    lines = [
        "f = cache.open(url)",
        "try:",
        "    print('reading', flush=True)",
        "    f.read(1000)",
        "except KeyboardInterrupt:",
        "    print('interrupted', flush=True)",
        "sys.stdin.readline()",
        "print(f.read().hex(), flush=True)",
    ]
    child = reader_child(lines, cache_dir, origin.url("/held"))
    assert child.stdout.readline() == "reading\n"
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline() == "interrupted\n"
    route.release.set()
    child.stdin.write("go on\n")
    child.stdin.flush()
    assert child.stdout.readline() == body.hex() + "\n"
    assert child.wait(WAIT) == 0


# Python 3.12+ warns of fork in a process with threads (the runtime's): the point here.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
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
