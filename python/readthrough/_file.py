"""BlobFile: one read of a key as a binary file object."""

from __future__ import annotations

import io
from typing import Callable, Optional

from . import _readthrough


class BlobFile(io.RawIOBase):
    """One read of a key, made by ``Cache.open``: a read-only binary file that streams
    the blob while it is being fetched.

    Guarantees: the bytes are exactly those of one complete, successful origin
    response, or a read raises ``readthrough.Error`` (``OriginError``,
    ``ChangedError``, ...). ``readinto`` returns the bytes that have landed as soon as
    there are any, so a reader gets its first bytes before the fill ends; ``read(n)``
    returns ``n`` bytes unless the blob ends first, as a file on disk does.

    Seeking: ``seek`` goes anywhere, from the start, the current position or the end
    (``SEEK_END`` needs the length: always known for a hit, and for a fill when the
    origin announced it; otherwise it raises ``io.UnsupportedOperation``). The next
    read after a seek reads the key again through the cache from the new offset (the
    crate's ``Reader.starting_at``), so the bytes skipped are never read: a hit reads
    its file from there, a fill's read waits until the offset has landed. A cold key is
    still fetched whole, from the start. Each such read is a read of the key as stored
    then: if the blob was replaced in between, the bytes after a seek are those of the
    new blob. Reads past the end return ``b""``.

    Closing (or leaving the ``with`` block) stops this read only: a fill it started
    goes on in the background and stores the blob. Use one ``BlobFile`` from one
    thread at a time; a second thread reading while the first waits gets
    ``RuntimeError``.
    """

    def __init__(self, reader: _readthrough.Reader, reopen: Callable[[], _readthrough.Reader]) -> None:
        super().__init__()
        self._reader = reader
        self._reopen = reopen
        #: The position, and the blob offset of the reader's next byte.
        self._pos = 0
        self._at = 0
        #: Whether the reader has not been read, so it can still start anywhere.
        self._fresh = True

    @property
    def kind(self) -> str:
        """How the current read was served: ``"hit"`` (stored), ``"led"`` (this
        process fetches), ``"joined"`` (another read in this process fetches) or
        ``"followed"`` (another process fetches). A seek may start a new read."""
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
        if not view or not self._moved():
            return 0
        data = self._reader.read(len(view))
        n = len(data)
        view[:n] = data
        self._pos = self._at = self._pos + n
        return n

    def read(self, size: Optional[int] = -1) -> bytes:
        self._checkClosed()
        if size == 0 or not self._moved():
            return b""
        if size is None or size < 0:
            data = self._reader.read_all()
        else:
            data = self._reader.read(size, True)
        self._pos = self._at = self._pos + len(data)
        return data

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
            raise io.UnsupportedOperation(
                "cannot seek from the end: the blob's length is not known (the origin did not announce it)"
            )
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()

    def _moved(self) -> bool:
        """Makes the reader's next byte the one at the position, starting a new read
        if the reader has been read; whether there is a byte there (not past the end)."""
        if self._at != self._pos:
            if self._past_end():
                return False
            if not self._fresh:
                self._reader.close()
                self._reader, self._at, self._fresh = self._reopen(), 0, True
                if self._past_end():
                    return False
            if self._at != self._pos:
                self._fresh = False  # start_at uses the reader up, even when it fails
                self._reader.start_at(self._pos)
                self._at = self._pos
        self._fresh = False
        return True

    def _past_end(self) -> bool:
        return self.length is not None and self._pos >= self.length
