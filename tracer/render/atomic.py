"""Outputs appear whole or not at all: written to a hidden file beside the target, then renamed.
And the same inputs give the same bytes: a workbook's document dates are `document_date()`."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from tracer.errors import TracerError, quietly


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path in the target's folder; on success it replaces `path`, on any
    error (or Ctrl-C) it is removed and `path` is left as it was.  A failure of the file system
    is a TracerError naming the target (not the hidden temporary file)."""
    tmp = None
    try:
        with quietly():  # a signal meanwhile takes effect inside the try: the file is removed
            fd, tmp = tempfile.mkstemp(prefix=".tracer-", suffix=path.suffix, dir=path.parent)
            os.close(fd)
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; an output is a normal file
        with quietly():
            os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise TracerError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:  # an error, or a signal (Interrupted)
        _remove(tmp)
        raise


def _remove(tmp) -> None:
    if tmp is not None:
        with quietly():
            Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_text(path: Path):
    """A text file that appears at `path` only when completely written."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        yield f


FIXED_DATE = datetime(1980, 1, 1, tzinfo=timezone.utc)  # the earliest date a zip member can carry


def document_date() -> datetime:
    """The created/modified date written into a workbook's properties: $SOURCE_DATE_EPOCH (seconds
    since 1970, the reproducible-builds convention) when set, else 1 January 1980, so that the same
    command gives the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return FIXED_DATE
    try:
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise TracerError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970 (got {epoch!r})") from None
