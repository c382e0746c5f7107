"""One error hierarchy, so callers can catch everything dataplug raises with one ``except``.

Every message names the object (URI), and where it makes sense the byte offset and what to do next:
a Spark user sees only the message text, several layers of Java stack trace away from our code.
"""

from __future__ import annotations


class DataplugError(Exception):
    """Base of every error raised by pyspark-dataplug."""


class OptionError(DataplugError, ValueError):
    """An unknown option or a bad option value; the message lists what is valid."""


class FormatError(DataplugError):
    """The object's bytes are not valid for the declared format (malformed, truncated, wrong format)."""

    def __init__(self, uri: str, offset: int | None, what: str) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{uri}{where}: {what}")
        self.uri = uri
        self.offset = offset


class StorageError(DataplugError):
    """Reading or writing an object failed after retries (missing, denied, throttled, unreachable)."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The object (or every object a glob or prefix names) does not exist."""


class IndexMissingError(DataplugError):
    """No index exists for an object and the read was not told to fall back to a plain scan."""


class StaleIndexError(DataplugError):
    """The object changed (size or ETag) since its index was built; its rows could be wrong."""


class MissingDependencyError(DataplugError, ImportError):
    """An optional library a format needs is not installed; the message is the ``pip install`` that adds it.

    Also an ImportError, so code that guards optional imports the usual way still catches it.
    """


class IndexFormatError(DataplugError):
    """An index exists but cannot be used (corrupt, or written by an incompatible version)."""
