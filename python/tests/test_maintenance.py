"""stats, entries, metadata, prune, verify, status and warm."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys

import pytest
import readthrough
from conftest import WAIT, blob


def test_stats_entries_and_metadata(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: key.encode() * 10)
    cache.get_bytes("a")
    cache.get_bytes("a")
    stats = cache.stats()
    assert (stats.misses, stats.hits, stats.fills_led, stats.errors) == (1, 1, 1, 0)
    assert stats.origin_bytes == 10 and stats.bytes_served == 20
    [entry] = cache.entries()
    assert (entry.key, entry.size, entry.expires) == ("a", 10, None)
    assert (entry.present, entry.stored, entry.slices) == (10, 10, None)
    assert entry.created.tzinfo is datetime.timezone.utc
    assert open(entry.path, "rb").read() == b"a" * 10
    assert cache.metadata("a").sha256 == entry.sha256
    assert cache.metadata("b") is None
    assert cache.status().entries == 1


def test_put_contains_remove(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"from origin")
    assert cache.put("k", b"mine") == 4
    assert cache.contains("k") and cache.get_bytes("k") == b"mine"
    assert cache.remove("k") and not cache.remove("k")
    assert cache.get_bytes("k") == b"from origin"


def test_prune_to_a_size(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"")
    cache.put("a", bytes(100))
    cache.put("b", bytes(100))
    report = cache.prune(max_size="150B")
    assert (len(report.removed), report.bytes_freed) == (1, 100)
    assert len(cache.entries()) == 1
    assert len(cache.prune(max_size=0).removed) == 1
    assert cache.entries() == []
    with pytest.raises(readthrough.InvalidSettingError, match="not a size"):
        cache.prune(max_size="a lot")


def test_verify_removes_a_corrupt_entry(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"good")
    path = cache.path("a")
    with open(path, "wb") as f:
        f.write(b"evil")
    report = cache.verify()
    assert report.checked == 1
    assert [(c.key, c.path) for c in report.corrupt] == [("a", path)]
    assert not cache.contains("a")
    assert cache.get_bytes("a") == b"good"


def test_verify_on_read_raises_corrupt(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"good", verify_on_read=True)
    with open(cache.path("a"), "wb") as f:
        f.write(b"evil")
    with pytest.raises(readthrough.CorruptError, match='"a"'):
        cache.get_bytes("a")


def test_warm_fetches_each_key_once_and_reports(origin, cache_dir, capsys):
    origin.serve("/1", blob(1000))
    origin.serve("/2", blob(2000))
    urls = [origin.url("/1"), origin.url("/2"), origin.url("/1"), origin.url("/gone")]
    cache = readthrough.Cache(cache_dir)
    report = cache.warm(urls, jobs=2, progress=False)
    assert (report.fetched, report.cached, report.bytes) == (2, 0, 3000)
    [(url, err)] = report.failed
    assert url == origin.url("/gone") and isinstance(err, readthrough.NotFoundError)
    assert capsys.readouterr().err == ""

    again = cache.warm(urls[:2], progress=True)
    assert (again.fetched, again.cached) == (0, 2)
    assert "warmed 2 keys" in capsys.readouterr().err
    assert origin.requests["/1"] == 1 and origin.requests["/2"] == 1
    for jobs in (0, -1, 2.5):
        with pytest.raises(readthrough.InvalidSettingError, match="jobs must be a whole number"):
            cache.warm(urls, jobs=jobs)


def test_warm_draws_a_bar_and_a_summary_on_a_terminal(origin, cache_dir):
    origin.serve("/1", blob(1000))
    script = "import sys, readthrough; readthrough.Cache(sys.argv[1]).warm([sys.argv[2]])"
    terminal, stderr = os.openpty()
    child = subprocess.Popen([sys.executable, "-c", script, cache_dir, origin.url("/1")], stderr=stderr)
    os.close(stderr)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert child.wait(WAIT) == 0
    assert re.search(rb"[01]/1 keys", shown), shown
    assert b"warmed 1 key in" in shown and b"1 fetched (1000 B)" in shown
