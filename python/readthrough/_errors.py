"""The exceptions of readthrough: one per kind of the crate's errors.

Every exception has a one-line message that names the key (or path, or URL) and the
cause, and two attributes: ``key``, the key or URL it is about (``None`` when it is
about no key), and ``status``, the HTTP status of an origin's refusal (else ``None``).
"""

from __future__ import annotations

from typing import Optional


class Error(Exception):
    """Base of every readthrough exception."""

    key: Optional[str] = None
    status: Optional[int] = None


class BadDirectoryError(Error):
    """The cache directory cannot be used: it is a file, or cannot be created, written
    or locked."""


class LocalIOError(Error, OSError):
    """A file operation inside the cache directory failed."""


class InvalidKeyError(Error, ValueError):
    """The key cannot be used (it is empty, or a custom layout maps it outside the
    store)."""


class InvalidUrlError(Error, ValueError):
    """A key is not a URL the cache can fetch (http://, https:// or s3://)."""


class InvalidSettingError(Error, ValueError):
    """A setting or an argument cannot work (a negative timeout, a zero size, a size
    that cannot be read)."""


class OriginError(Error):
    """The origin failed before or while sending the body, or sent a body that does not
    check out (length, digest). Nothing was cached; the next read fetches again. A
    custom origin's own exception is the ``__cause__``; ``status`` is the HTTP status
    when a server refused."""


class NotFoundError(OriginError, FileNotFoundError):
    """The origin has nothing under the key: HTTP 404 or 410, an object store's "not
    found", or a custom origin that raised ``FileNotFoundError``."""


class ChangedError(Error):
    """The blob changed while it was being read (a takeover found different bytes, or
    the object changed while its download resumed). Read again to get the new one."""


class CorruptError(Error):
    """A stored blob's bytes no longer match its digest (found with
    ``verify_on_read``); it was removed, so the next read fetches it again."""


class ReclaimedError(Error):
    """This process's fill stood still for the staleness timeout and another process
    took it over; that process stores the blob."""


__all__ = [
    "Error",
    "BadDirectoryError",
    "LocalIOError",
    "InvalidKeyError",
    "InvalidUrlError",
    "InvalidSettingError",
    "OriginError",
    "NotFoundError",
    "ChangedError",
    "CorruptError",
    "ReclaimedError",
]

for _name in __all__:
    globals()[_name].__module__ = "readthrough"
