"""The one exception the CLI turns into a one-line message and exit code 2, and reading an
input file with every OS error turned into it."""

from __future__ import annotations

from pathlib import Path


class TracerError(Exception):
    """Bad input or an environment problem the user can fix; the message is one line."""


def read_bytes(source, name: str, kind: str, limit: int = -1) -> bytes:
    """The bytes of a file (the first `limit` of them if given): `source` is a path or a
    package resource, `name` how messages call it, `kind` what file it should be ("an MNIST",
    "a text")."""
    source = source if hasattr(source, "open") else Path(source)
    try:
        if isinstance(source, Path) and source.is_dir():
            raise IsADirectoryError
        with source.open("rb") as handle:
            return handle.read(limit)
    except FileNotFoundError:
        raise TracerError(f"{kind} file not found: {name}") from None
    except IsADirectoryError:
        raise TracerError(f"expected {kind} file but found a folder (directory): {name}") from None
    except OSError as exc:
        raise TracerError(f"cannot read {kind} file {name}: {exc.strerror or exc.__class__.__name__}") from None
