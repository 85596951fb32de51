"""A process that leads a fill and is killed: a follower in another process takes over
and gets the whole body."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal

import workers
from conftest import WAIT, blob


def test_sigkill_of_the_leader_lets_a_follower_complete(origin, cache_dir):
    body = blob(2 << 20, seed=5)
    route = origin.serve("/weights.bin", body, hold_at=256 << 10)
    url = origin.url("/weights.bin")
    spawn = multiprocessing.get_context("spawn")
    leader_queue, follower_queue = spawn.Queue(), spawn.Queue()

    leader = spawn.Process(target=workers.open_and_read, args=(cache_dir, url, leader_queue))
    leader.start()
    assert leader_queue.get(timeout=WAIT) == ("kind", "led")
    follower = spawn.Process(target=workers.open_and_read, args=(cache_dir, url, follower_queue))
    follower.start()
    assert follower_queue.get(timeout=WAIT) == ("kind", "followed")

    os.kill(leader.pid, signal.SIGKILL)
    leader.join(WAIT)
    assert leader.exitcode == -signal.SIGKILL
    # The held first response never finishes; the follower fetches again and completes.
    assert follower_queue.get(timeout=WAIT) == ("sha256", hashlib.sha256(body).hexdigest())
    follower.join(WAIT)
    assert follower.exitcode == 0
    assert origin.requests["/weights.bin"] == 2
    assert not route.release.is_set()
