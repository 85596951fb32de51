"""BlobFile: one read of a key as a binary file object."""

from __future__ import annotations

import io
from typing import Optional

from . import _readthrough

#: How far back ``BlobFile.seek`` can go: within the first this many bytes, while no
#: byte past them has been read. Enough for the format probes of ``tarfile.open``,
#: ``gzip`` and the like, which read a header and seek back to the start.
REWIND_BYTES = 1 << 20


class BlobFile(io.RawIOBase):
    """One read of a key, made by ``Cache.open``: a read-only binary file that streams
    the blob while it is being fetched.

    Guarantees: the bytes are exactly those of one complete, successful origin
    response, or a read raises ``readthrough.Error`` (``OriginError``,
    ``ChangedError``, ...). ``readinto`` returns the bytes that have landed as soon as
    there are any, so a reader gets its first bytes before the fill ends; ``read(n)``
    returns ``n`` bytes unless the blob ends first, as a file on disk does.

    Seeking: ``seek`` goes forward anywhere (reading the bytes between), and back
    within the first ``REWIND_BYTES`` while no byte past them has been read; further
    back it raises ``io.UnsupportedOperation``. ``tell`` always works.

    Closing (or leaving the ``with`` block) stops this read only: a fill it started
    goes on in the background and stores the blob. Use one ``BlobFile`` from one
    thread at a time; a second thread reading while the first waits gets
    ``RuntimeError``.
    """

    def __init__(self, reader: _readthrough.Reader) -> None:
        super().__init__()
        self._reader = reader
        self._pos = 0
        self._taken = 0
        self._prefix = bytearray()

    @property
    def kind(self) -> str:
        """How this read was served: ``"hit"`` (stored), ``"led"`` (this process
        fetches), ``"joined"`` (another read in this process fetches) or
        ``"followed"`` (another process fetches)."""
        return self._reader.kind

    @property
    def length(self) -> Optional[int]:
        """The blob's length when known: always for a hit, and for a fill when the
        origin announced it."""
        return self._reader.length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        if self._pos < self._taken:
            n = min(len(view), self._taken - self._pos)
            view[:n] = self._prefix[self._pos : self._pos + n]
        else:
            data = self._reader.read(len(view))
            n = len(data)
            view[:n] = data
            self._keep(memoryview(data))
        self._pos += n
        return n

    def read(self, size: Optional[int] = -1) -> bytes:
        self._checkClosed()
        if size is None or size < 0:
            head, rest = bytes(self._prefix[self._pos : self._taken]), self._reader.read_all()
        else:
            head = bytes(self._prefix[self._pos : min(self._taken, self._pos + size)])
            rest = self._reader.read(size - len(head), True) if len(head) < size else b""
        self._pos += len(head)
        self._keep(memoryview(rest))
        self._pos += len(rest)
        return head + rest if head else rest

    def readall(self) -> bytes:
        return self.read()

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END and self.length is not None:
            target = self.length + offset
        elif whence == io.SEEK_END:
            raise io.UnsupportedOperation("cannot seek from the end: the origin did not announce the length")
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target < self._pos and self._taken > len(self._prefix):
            raise io.UnsupportedOperation(
                f"cannot seek back to {target}: a blob streams, and seeks back only within its first {REWIND_BYTES} bytes"
            )
        if target <= self._taken:
            self._pos = target
            return self._pos
        self._pos = self._taken
        scratch = bytearray(min(target - self._pos, 256 << 10))
        while self._pos < target:
            want = min(len(scratch), target - self._pos)
            if self.readinto(memoryview(scratch)[:want]) == 0:
                break
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
            self._prefix = bytearray()
        super().close()

    def _keep(self, taken: memoryview) -> None:
        """Counts `taken` as read from the stream, keeping what falls in the rewind
        window."""
        if self._taken == len(self._prefix) and self._taken < REWIND_BYTES:
            self._prefix += taken[: REWIND_BYTES - self._taken]
        self._taken += len(taken)
