"""The native half of readthrough (Rust, through PyO3). Use it through the package
``readthrough``: ``Cache`` there converts the arguments and wraps ``Reader`` in a file
object."""

import datetime
from typing import Any, List, Optional, Tuple

class Stats:
    """A cache object's counters since it was made (clones share them; other ``Cache``
    objects and other processes have their own)."""

    hits: int
    """Reads served from a complete stored blob."""
    misses: int
    """Reads that found no blob stored."""
    fills_led: int
    """Fills this cache fetched from the origin itself."""
    fills_joined: int
    """Reads that joined a fill already running in this cache."""
    fills_followed: int
    """Fills this cache followed while another process (or cache) fetched."""
    stale_reclaims: int
    """Fills taken over from a process that stopped making progress."""
    revalidations: int
    """Expired blobs the origin confirmed current."""
    origin_bytes: int
    """Bytes received from origins."""
    bytes_served: int
    """Bytes handed to readers."""
    errors: int
    """Reads that ended in an error."""
    tier_hits: int
    """Fills served from a copy in the shared tier."""
    tier_misses: int
    """Fills that found no copy in the shared tier."""
    tier_lease_waits: int
    """Fills that followed another host's upload to the shared tier."""
    tier_takeovers: int
    """Fleet leases taken over from a host that stopped renewing them."""
    tier_bytes_read: int
    """Bytes read from the shared tier."""
    tier_bytes_written: int
    """Bytes uploaded to the shared tier."""
    tier_errors: int
    """Calls to the shared tier that failed (each read went on from the origin)."""

class Entry:
    """A stored blob and what the cache knows of it."""

    key: str
    size: int
    present: int
    """How many of its bytes are stored: all for a blob stored whole, those of its
    slices present for a blob read by slices (``slice_size``)."""
    stored: int
    """The bytes its files take in the cache (its blob, its slices and their
    manifest): what ``max_bytes`` and eviction count."""
    slices: Optional[Tuple[int, int, int]]
    """For a blob read by slices: ``(slice_size, slices_present, slice_count)``."""
    sha256: Optional[str]
    """Its SHA-256, in hex; ``None`` for a blob stored only by slices."""
    validator: Optional[str]
    """The origin's ETag or Last-Modified, when it gave one."""
    content_type: Optional[str]
    path: Optional[str]
    """The path of its complete file; ``None`` for a blob stored only by slices."""
    @property
    def created(self) -> datetime.datetime:
        """When it was stored (UTC)."""
    @property
    def last_read(self) -> datetime.datetime:
        """When it was last read, to within a minute (UTC)."""
    @property
    def expires(self) -> Optional[datetime.datetime]:
        """When it stops being served; ``None`` for never."""

class Status:
    """How the cache directory is doing."""

    entries: int
    bytes: int
    fills_in_progress: int
    """Fills whose lock is held now, by any process."""
    abandoned_tmp_files: int
    """Tmp files no live fill writes (left by crashed fills)."""
    abandoned_bytes: int

class PruneReport:
    """What ``Cache.prune`` removed."""

    removed: List[Entry]
    bytes_freed: int
    tmp_files_removed: int
    lock_files_removed: int
    orphans_removed: int
    named_locks_removed: int

class Corrupt:
    """An entry ``Cache.verify`` found corrupt and removed."""

    key: str
    path: str
    reason: str

class VerifyReport:
    """What ``Cache.verify`` found."""

    checked: int
    corrupt: List[Corrupt]
    unverifiable: List[str]
    """Stored files without readable metadata to check them against; left alone."""

class WarmReport:
    """What ``Cache.warm`` did; ``str()`` of it is a one-line summary."""

    fetched: int
    cached: int
    """Keys that were already stored."""
    bytes: int
    """Bytes fetched."""
    seconds: float
    failed: List[Tuple[str, BaseException]]
    """Each key that failed, with its exception (a ``readthrough.Error``)."""

class Reader:
    """The body of one read. ``readthrough.BlobFile`` wraps it."""

    kind: str
    """"hit", "led", "joined" or "followed"."""
    length: Optional[int]
    def read(self, size: int, whole: bool = False) -> bytes:
        """Up to ``size`` of the bytes that are there, waiting only if there are none
        (with ``whole``, ``size`` bytes unless the body ends first); empty at the end.
        Raises ``readthrough.Error`` when the read fails, and ``RuntimeError`` while
        another thread is reading."""
    def start_at(self, offset: int) -> None:
        """Makes this read start at blob offset ``offset`` (the crate's
        ``Reader::starting_at``): the bytes before it are not read, and a fill's read
        waits until it has landed. Only before the first read, and not past a known
        end (``InvalidSettingError``); the read has ended if it fails."""
    def read_all(self) -> bytes:
        """The rest of the body."""
    def close(self) -> None:
        """Stops this read; a fill it started goes on."""

class Cache:
    """The crate's ``Cache``. Made by ``readthrough.Cache``, which documents it."""

    def __init__(
        self,
        dir: str,
        *,
        origin: Any,
        stale_after: float,
        durability: str,
        file_locks: bool,
        default_ttl: Optional[float],
        max_bytes: Optional[int],
        verify_on_read: bool,
        stale_while_revalidate: bool,
        group_shared: bool,
        s3_endpoint: Optional[str],
        slice_size: Optional[int],
        shared_tier: Optional[str],
        shared_tier_read_only: bool,
    ) -> None: ...
    @property
    def dir(self) -> str: ...
    def path(self, key: str) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open(self, key: str) -> Reader: ...
    def get_range(self, key: str, start: int, end: int) -> bytes: ...
    def put(self, key: str, data: bytes) -> int: ...
    def contains(self, key: str) -> bool: ...
    def remove(self, key: str) -> bool: ...
    def metadata(self, key: str) -> Optional[Entry]: ...
    def warm(self, keys: List[str], jobs: int, progress: bool) -> WarmReport: ...
    def stats(self) -> Stats: ...
    def status(self) -> Status: ...
    def entries(self) -> List[Entry]: ...
    def prune(self, max_bytes: Optional[int], older_than: Optional[float]) -> PruneReport: ...
    def verify(self) -> VerifyReport: ...
    def check(self) -> None: ...

def parse_size(text: str) -> int:
    """The bytes of a size such as "200GiB" or "1.5 GB"; ``InvalidSettingError``
    otherwise."""

def shutdown(grace: float) -> None:
    """Stops this process's runtime (registered with ``atexit``)."""
