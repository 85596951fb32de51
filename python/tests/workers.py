"""What the child processes of the tests run (importable under "spawn")."""

from __future__ import annotations

import hashlib

import readthrough


def open_and_read(cache_dir: str, url: str, queue) -> None:
    """Opens `url`, reports how the read is served, then reads it all and reports the
    SHA-256 of what it got (or the error)."""
    try:
        cache = readthrough.Cache(cache_dir)
        with cache.open(url) as f:
            queue.put(("kind", f.kind))
            data = f.read()
        queue.put(("sha256", hashlib.sha256(data).hexdigest()))
    except readthrough.Error as e:
        queue.put(("error", f"{type(e).__name__}: {e}"))
