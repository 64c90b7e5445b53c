"""Many workbooks at once, on every core: a class's exercises written, a folder of submissions graded.

Each item is done in a worker process (forked where the system can: nothing to import again), at
most `jobs` at a time, and the results come back in the items' order.  Only the results travel
back, so the memory a batch needs is one item's per worker plus the small results.  Ctrl-C stops
the command (see _worker): the items not started are cancelled, the ones started are finished,
and everything made for the batch is removed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker() -> None:
    """A worker leaves Ctrl-C (which the whole terminal's process group gets) to the command: the
    command stops giving out items and waits for the ones being done, each a moment's work that
    cleans up after itself, so nothing is left behind and no worker prints a traceback."""
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def parallel(fn, items: list, jobs: int | None = None):
    """fn(item) for each item, in order, on up to `jobs` processes (default: every core); in this
    process when one is enough.  `fn` must be a module-level function (it travels by name)."""
    jobs = max(1, min(jobs or cores(), len(items)))
    if jobs == 1:
        yield from map(fn, items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker)
    try:
        yield from pool.map(fn, items)
    finally:  # however the batch ends: nothing left running, nothing not started will start
        pool.shutdown(wait=True, cancel_futures=True)
