"""The one exception the CLI turns into a one-line message and exit code 2, the names a mistyped
one may have meant, and reading an input file with every OS error turned into it; and how a
command stops on a signal (Interrupted, which the CLI turns into one line and exit code 128 + the
signal), leaving nothing behind."""

from __future__ import annotations

import difflib
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path


class TracerError(Exception):
    """Bad input or an environment problem the user can fix; the message is one line."""


def close_names(word: str, choices, n: int = 3) -> list[str]:
    """The choices a mistyped `word` may have meant, closest first: a typo of one (--hiden,
    backwards), one it begins (--temp: --temperature), _ for - (--lr_d); none for a merely similar
    word (--prompt is not --warmup).  Dashes and case do not count; the likeness is the smaller of
    difflib's two ratios, which are not symmetric."""
    plain = lambda s: str(s).lstrip("-").replace("_", "-").lower()  # noqa: E731
    w = plain(word)
    same = [c for c in choices if plain(c) == w]
    if same:
        return same[:1]

    def likeness(choice):
        c = plain(choice)
        if len(w) >= 3 and c.startswith(w):
            return 1.0
        return min(difflib.SequenceMatcher(None, w, c).ratio(), difflib.SequenceMatcher(None, c, w).ratio())

    scored = sorted(((likeness(c), k, c) for k, c in enumerate(dict.fromkeys(choices))), key=lambda x: (-x[0], x[1]))
    return [c for score, _, c in scored if score >= 0.7][:n]


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


# --- stopping on a signal -------------------------------------------------------------------------
# SIGINT (Ctrl-C), SIGTERM and SIGHUP stop a command alike: `Interrupted` is raised where the program
# is, so every `with` and `finally` on the way out removes what it made (temporary files and folders,
# a LibreOffice child), and the CLI prints one line and exits 128 + the signal's number.

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(BaseException):
    """A signal stopped the command.  Not an Exception, so no `except Exception` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class _Signals:
    """What the handler knows: the signal that came (if any), and whether a step that must not be cut
    in half is running (then the signal waits for its end)."""

    received: int | None = None
    pending: int | None = None
    quiet = 0


def _stop(signum: int):
    for s in STOP_SIGNALS:  # the cleanup this starts must finish: later signals are ignored
        signal.signal(s, signal.SIG_IGN)
    _Signals.received = signum
    raise Interrupted(signum)


def _handler(signum, frame):
    if _Signals.quiet:
        _Signals.pending = _Signals.pending or signum
    else:
        _stop(signum)


@contextmanager
def stop_on_signals(restore: bool = True):
    """While the body runs, SIGINT, SIGTERM and SIGHUP raise Interrupted; afterwards the previous
    handlers come back, or (restore=False: the program is about to exit, its work done) the signals
    are ignored.  For the CLI: a library leaves the signals alone."""
    previous = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    _Signals.received = _Signals.pending = None
    _Signals.quiet = 0
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if restore else signal.SIG_IGN)


def raise_if_interrupted() -> None:
    """Raise Interrupted again if a signal came, even if some library swallowed the exception: an
    interrupted command must never report success."""
    if _Signals.received:
        raise Interrupted(_Signals.received)


@contextmanager
def quietly():
    """A step that must not be cut in half (making or removing a temporary file, renaming the
    output): a signal that comes meanwhile takes effect at its end."""
    _Signals.quiet += 1
    try:
        yield
    finally:
        _Signals.quiet -= 1
        if not _Signals.quiet and _Signals.pending:
            signum, _Signals.pending = _Signals.pending, None
            _stop(signum)


@contextmanager
def temporary_folder(prefix: str, parent: Path | None = None):
    """A fresh folder in $TMPDIR (or in `parent`), removed with everything in it however the body ends."""
    folder = None
    try:
        with quietly():  # a signal meanwhile takes effect inside the try: the folder is removed
            folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        yield folder
    finally:
        if folder is not None:
            with quietly():
                shutil.rmtree(folder, ignore_errors=True)
