"""readthrough: a shared on-disk read-through blob cache.

A read asks for a key. If the blob is on disk it is read from disk. If not, exactly one
fetch from the origin runs, however many threads and processes (Python, the
``readthrough`` command, Rust programs) ask at the same time on the same directory,
and every asker streams the bytes as they land. Blobs are published atomically: a
reader gets the bytes of one complete, successful origin response, or an exception. A
fetching process that dies is taken over at once; one that hangs is reclaimed after
``stale_after`` seconds.

    import readthrough

    cache = readthrough.Cache("/var/cache/blobs", stale_after=30)
    path = cache.path("https://example.com/model.safetensors")
    with cache.open("https://example.com/big.bin") as f:
        header = f.read(8)

This package is a thin layer over the Rust crate of the same name.

Threads, processes and fork: a ``Cache`` may be shared by threads; every call that
waits releases the GIL, and Ctrl-C (``KeyboardInterrupt``) interrupts it (the fill
goes on in the background and stores the blob). One runtime serves the whole process.
After ``os.fork`` a child makes its own ``Cache``: one made before the fork raises
``readthrough.Error`` in the child (``multiprocessing`` with "spawn" or "forkserver"
never meets this). At interpreter exit the fills this process leads are cancelled and
another process takes them over.

Not there yet: ranged fills (``get_range`` of a cold key fetches the whole blob) and
the shared tier.
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
from typing import Any, Callable, Iterable, List, Optional, Union

from . import _readthrough
from . import _errors
from ._errors import *  # noqa: F401,F403 (the exception classes)
from ._errors import InvalidSettingError
from ._file import BlobFile
from ._readthrough import Entry, PruneReport, Stats, Status, VerifyReport, WarmReport

Seconds = Union[float, int, datetime.timedelta]
Size = Union[int, str]
Origin = Union[Callable[[str], Any], Any]

atexit.register(_readthrough.shutdown, 2.0)


def _seconds(name: str, value: Seconds) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSettingError(f"{name} must be a number of seconds or a timedelta, not {type(value).__name__}")
    return float(value)


def _size(name: str, value: Size) -> int:
    if isinstance(value, str):
        try:
            return _readthrough.parse_size(value)
        except InvalidSettingError as e:
            raise InvalidSettingError(f"{name}: {e}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSettingError(f"{name} must be a number of bytes or a size such as \"200GiB\", not {value!r}")
    return value


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSettingError(f"{name} must be a whole number, at least 1, not {value!r}")
    return value


class Cache:
    """A cache directory and the origin it reads through.

    ``origin=None`` (the default) takes keys that are URLs: ``http://`` and
    ``https://``, and ``s3://bucket/key`` with the usual AWS environment variables
    (``s3_endpoint`` for an S3-compatible server). A custom origin is a callable
    ``origin(key)``, or an object with a ``fetch(key)`` method, that returns the
    blob as bytes or as an iterable of bytes chunks (streamed as they come). It is
    called once per fill, on a worker thread. An exception it raises reaches every
    reader of that fill as ``OriginError`` (``NotFoundError`` for a
    ``FileNotFoundError``) with the exception as ``__cause__``; nothing is cached and
    the next read calls it again.

    Settings (as the crate's builder): ``stale_after`` (seconds or a timedelta, default
    30) before a waiter takes over a fill that stands still; ``durability``
    (``"background"``, the default: publish at once and flush just after;
    ``"fsync"``: flush before publishing; ``"off"``; in every mode a blob a crash may
    have damaged is checked against its SHA-256 before it is served again), or
    ``durable`` (``True`` for ``"fsync"``, ``False`` for ``"off"``); ``file_locks`` (coordinate processes, default on);
    ``default_ttl`` (how long a blob is served, default forever); ``max_bytes`` (evict
    the least recently read beyond this, an int or a size such as "200GiB");
    ``verify_on_read`` (check every hit's SHA-256); ``stale_while_revalidate``;
    ``group_shared`` (share the directory with the group); ``slice_size`` (an int or a
    size: a range read of a cold blob fetches only the slices of this size it covers);
    ``shared_tier`` (a fleet's tier below the cache: ``s3://bucket/prefix`` or
    ``file:///path``, settings from the usual environment variables) and
    ``shared_tier_read_only`` (read the tier, never write it).

    Raises ``BadDirectoryError`` when the directory cannot be used and
    ``InvalidSettingError`` for a setting that cannot work.
    """

    def __init__(
        self,
        dir: Union[str, "os.PathLike[str]"],
        *,
        origin: Optional[Origin] = None,
        stale_after: Seconds = 30,
        durability: str = "background",
        durable: Optional[bool] = None,
        file_locks: bool = True,
        default_ttl: Optional[Seconds] = None,
        max_bytes: Optional[Size] = None,
        verify_on_read: bool = False,
        stale_while_revalidate: bool = False,
        group_shared: bool = False,
        s3_endpoint: Optional[str] = None,
        slice_size: Optional[Size] = None,
        shared_tier: Optional[str] = None,
        shared_tier_read_only: bool = False,
    ) -> None:
        self._native = _readthrough.Cache(
            os.fspath(dir),
            origin=origin,
            stale_after=_seconds("stale_after", stale_after),
            durability=durability if durable is None else ("fsync" if durable else "off"),
            file_locks=file_locks,
            default_ttl=None if default_ttl is None else _seconds("default_ttl", default_ttl),
            max_bytes=None if max_bytes is None else _size("max_bytes", max_bytes),
            verify_on_read=verify_on_read,
            stale_while_revalidate=stale_while_revalidate,
            group_shared=group_shared,
            s3_endpoint=s3_endpoint,
            slice_size=None if slice_size is None else _size("slice_size", slice_size),
            shared_tier=shared_tier,
            shared_tier_read_only=shared_tier_read_only,
        )

    @property
    def dir(self) -> str:
        """The cache directory."""
        return self._native.dir

    def path(self, key: str) -> str:
        """Makes sure ``key`` is stored, fetching it if needed, and returns the path of
        its complete file. The file is never written in place: a replacement is a new
        file renamed over the path, so an open handle keeps its bytes."""
        return self._native.path(key)

    def get_bytes(self, key: str) -> bytes:
        """The whole blob of ``key``, read through the cache."""
        return self._native.get_bytes(key)

    def open(self, key: str) -> BlobFile:
        """A binary file object of the blob of ``key`` that streams while the blob is
        fetched. Returns once the origin has answered (an origin that refuses raises
        here); errors later in the body are raised by reads. It seeks anywhere: the
        read after a seek starts at the new offset, without reading the bytes before
        it (see ``BlobFile``)."""
        return BlobFile(self._native.open(key), lambda: self._native.open(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to ``end`` (exclusive; clamped to the blob's end, so
        ``b""`` past it, as a slice) of the blob of ``key``, through the crate's
        ``Cache::get_range``: a hit reads only those bytes; a stored or filling blob is
        read from ``start`` on, without reading the bytes before it (a fill's read
        waits until they have landed). A cold key is fetched whole, and stored (the
        crate has no slices yet): the call returns once ``end`` has landed."""
        if start < 0 or end < 0:
            raise ValueError(f"a range is of offsets at least 0, not {start}..{end}")
        return self._native.get_range(key, start, end)

    def put(self, key: str, data: bytes) -> int:
        """Stores ``data`` under ``key``, replacing what is there; returns its length."""
        return self._native.put(key, bytes(data))

    def contains(self, key: str) -> bool:
        """Whether a complete blob of ``key`` is stored."""
        return self._native.contains(key)

    def remove(self, key: str) -> bool:
        """Removes the stored blob of ``key``; whether there was one. Readers already
        reading it finish undisturbed."""
        return self._native.remove(key)

    def metadata(self, key: str) -> Optional[Entry]:
        """What is known of the stored entry of ``key``, ``None`` when nothing is."""
        return self._native.metadata(key)

    def warm(self, keys: Iterable[str], jobs: int = 16, progress: Optional[bool] = None) -> WarmReport:
        """Reads every key of ``keys`` (each once, ``jobs`` at a time) into the cache.
        With ``progress`` (default: when stderr is a terminal) it draws a progress bar
        on stderr and prints the summary at the end. A key that fails does not stop
        the others: the report's ``failed`` lists ``(key, exception)`` pairs."""
        shown = sys.stderr.isatty() if progress is None else progress
        report = self._native.warm(list(keys), _count("jobs", jobs), shown)
        if shown:
            print(report, file=sys.stderr)
        return report

    def stats(self) -> Stats:
        """This cache object's counters since it was made."""
        return self._native.stats()

    def status(self) -> Status:
        """Entries, bytes, fills in progress and abandoned files in the directory."""
        return self._native.status()

    def entries(self) -> List[Entry]:
        """The stored entries, in no particular order."""
        return self._native.entries()

    def prune(self, max_size: Optional[Size] = None, older_than: Optional[Seconds] = None) -> PruneReport:
        """Removes abandoned files and expired entries, then entries stored longer ago
        than ``older_than``, then the least recently read until the stored bytes fit
        ``max_size`` (an int or a size such as "200GiB"). Fills in progress are never
        touched."""
        return self._native.prune(
            None if max_size is None else _size("max_size", max_size),
            None if older_than is None else _seconds("older_than", older_than),
        )

    def verify(self) -> VerifyReport:
        """Re-reads every entry and checks its length and SHA-256; corrupt entries are
        removed (the next read fetches them again) and reported."""
        return self._native.verify()

    def check(self) -> None:
        """Raises ``BadDirectoryError`` unless the directory can be used now."""
        self._native.check()

    def __repr__(self) -> str:
        return f"readthrough.Cache({self.dir!r})"


__all__ = [
    "Cache",
    "BlobFile",
    "Entry",
    "Stats",
    "Status",
    "PruneReport",
    "VerifyReport",
    "WarmReport",
    *_errors.__all__,
]
