"""LibreOffice as a recalculation engine: it recalculates every formula of a workbook from scratch.

LibreOffice normally trusts the cached values of an .xlsx file and does not recalculate on load,
which would make any check prove nothing.  `recalculate` therefore runs it headless with a
throwaway user profile whose settings force a full recalculation on load, and converts the
workbook to a new .xlsx whose cached values are LibreOffice's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from tracer.engines.workbook import values_at
from tracer.errors import TracerError, quietly, temporary_folder

NAME = "libreoffice"
LABEL = "LibreOffice"
INSTALL_HINT = (
    "LibreOffice (soffice) not found: install it, "
    "e.g. 'apt-get install -y libreoffice-calc-nogui'"
)

DEFAULT_TIMEOUT = 600.0  # seconds for one LibreOffice conversion

# LibreOffice settings that force a recalculation of every formula on load
# (0 = always recalculate, 1 = never, 2 = ask) for .xlsx and .ods files.
_FORCE_RECALC_XCU = """\
<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
           xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def find_soffice() -> str:
    """Return the path of the LibreOffice executable.

    The environment variable ``TRACER_SOFFICE`` (a path or a command name)
    takes precedence; otherwise ``soffice`` or ``libreoffice`` is looked up
    on ``PATH``.  Raises :class:`TracerError` when none is found.
    """
    override = os.environ.get("TRACER_SOFFICE")
    if override:
        found = shutil.which(override)
        if found is None:
            raise TracerError(f"TRACER_SOFFICE={override!r} is not an executable; {INSTALL_HINT}")
        return found
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise TracerError(INSTALL_HINT)


def available() -> bool:
    try:
        find_soffice()
    except TracerError:
        return False
    return True


def require() -> None:
    """Raise TracerError with how to install LibreOffice when it is missing."""
    find_soffice()


def _write_profile(profile: Path) -> None:
    """Create a LibreOffice user profile that recalculates every file on load."""
    user = profile / "user"
    user.mkdir(parents=True)
    (user / "registrymodifications.xcu").write_text(_FORCE_RECALC_XCU, encoding="utf-8")


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run cmd in its own process group; on timeout, an error or a signal (Interrupted) kill the
    whole group and wait for it.

    soffice starts helper processes, so killing only the direct child could
    leave a LibreOffice instance behind (and files it writes after its folder is removed).
    """
    posix = os.name == "posix"
    proc = None
    try:
        with quietly():  # a signal while the child starts would leave it running, unknown to us
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, start_new_session=posix, env=env)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise TracerError(f"LibreOffice did not finish within {timeout:g} s") from None
    except BaseException:
        if proc is not None:
            _kill(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill(proc, patience: float = 3.0) -> None:
    """Kill LibreOffice's process group and wait until none of it is left (at most `patience` s)."""
    with quietly():
        if os.name != "posix":
            proc.kill()
            proc.communicate()
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


def recalculate(src: Path, outdir: Path, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Recalculate every formula of the workbook src in LibreOffice.

    Writes the recalculated workbook to ``outdir / src.name`` and returns
    that path.  outdir must not be src's own folder (that would overwrite
    src).  Raises :class:`TracerError` if LibreOffice is missing, fails,
    times out or produces no file.
    """
    return convert(src, outdir, "xlsx", timeout)


def convert(src: Path, outdir: Path, to: str = "xlsx", timeout: float = DEFAULT_TIMEOUT) -> Path:
    """The workbook src converted by LibreOffice (recalculated first) to `to` ("xlsx", or "pdf":
    printed with each sheet's page setup), as ``outdir / (src's name with that suffix)``."""
    made = convert_all([src], outdir, to, timeout)[0]
    if isinstance(made, TracerError):
        raise made
    return made


def convert_all(sources, outdir: Path, to: str = "xlsx",
                timeout: float = DEFAULT_TIMEOUT) -> list[Path | TracerError]:
    """Every workbook of `sources` converted by ONE LibreOffice process (recalculated first) to
    `to` ("xlsx" or "pdf"), as ``outdir / (its name with that suffix)``: LibreOffice starts once
    (a few seconds) for all of them.  Returns, in the order of `sources`, each converted file, or
    the TracerError saying why that one could not be converted (the others are converted all the
    same).  Raises TracerError before any work when LibreOffice is missing, when two sources
    share a name, or when a target would overwrite its source; and when LibreOffice fails as a
    whole or takes longer than `timeout` seconds per workbook."""
    sources = [Path(s).resolve() for s in sources]
    outdir = Path(outdir).resolve()
    targets = [outdir / (s.stem + "." + to) for s in sources]
    for s, target in zip(sources, targets):
        if target == s:
            raise TracerError(f"recalculation would overwrite {s.name}: choose another folder")
    twice = {t.name for t in targets if targets.count(t) > 1}
    if twice:
        raise TracerError(f"two workbooks would both be converted to {sorted(twice)[0]}: convert them separately")
    find_soffice()
    outdir.mkdir(parents=True, exist_ok=True)
    with temporary_folder("tracer-lo-") as tmp:
        made = _convert_batch(sources, tmp, to, timeout)
        for k, (found, target) in enumerate(zip(made, targets)):
            if not isinstance(found, TracerError):
                shutil.move(str(found), target)
                made[k] = target
    return made


def _convert_batch(sources: list[Path], tmp: Path, to: str, timeout: float) -> list[Path | TracerError]:
    """Convert `sources` in one soffice run inside the folder `tmp`: each source is copied to a
    plain name of its own (its position, so the output names are known and nothing is overwritten
    by surprise), and each converted file is left in tmp/out (or a TracerError for it)."""
    soffice = find_soffice()
    profile = tmp / "profile"
    _write_profile(profile)
    scratch = tmp / "tmp"  # LibreOffice's own temporary files (lu*.tmp) go here, not to $TMPDIR
    scratch.mkdir()
    work = tmp / "in"
    work.mkdir()
    copies = []
    for k, src in enumerate(sources):
        copies.append(work / f"book{k}.xlsx")
        shutil.copyfile(src, copies[-1])
    converted = tmp / "out"
    cmd = [
        soffice,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless", "--norestore",
        "--convert-to", to,
        "--outdir", str(converted),
        *map(str, copies),
    ]
    result = _run(cmd, timeout * max(1, len(sources)),
                  env={**os.environ, "TMPDIR": str(scratch), "TMP": str(scratch), "TEMP": str(scratch)})
    detail = " ".join((result.stderr or result.stdout or "").split())[:300]
    made: list[Path | TracerError] = []
    for k, src in enumerate(sources):
        produced = converted / f"book{k}.{to}"
        if result.returncode == 0 and produced.is_file():
            made.append(produced)
        else:
            made.append(TracerError(
                f"LibreOffice could not {'recalculate' if to == 'xlsx' else 'convert'} {src.name} "
                f"(exit code {result.returncode}){': ' + detail if detail else ''}"))
    return made


@contextmanager
def recalculating(paths, timeout: float = DEFAULT_TIMEOUT):
    """Recalculate every workbook of `paths` in one LibreOffice process, then read them: yields
    `values(path, wanted)`, the recalculated values of the wanted cells of one of those workbooks
    by (sheet, row, column), rows and columns from 1 (a TracerError for a workbook LibreOffice
    could not recalculate).  The recalculated copies live in a temporary folder until the end of
    the `with`, so a grader of many workbooks reads them one at a time:

        with libreoffice.recalculating(paths) as values:
            for path in paths:
                cells = values(path, {"Sheet1": {(2, 3)}})
    """
    paths = [Path(p).resolve() for p in paths]
    with temporary_folder("tracer-lo-") as tmp:
        made = dict(zip(paths, _convert_batch(paths, tmp, "xlsx", timeout))) if paths else {}

        def values(path, wanted: dict[str, set[tuple[int, int]]]) -> dict[tuple[str, int, int], object]:
            found = made[Path(path).resolve()]
            if isinstance(found, TracerError):
                raise found
            return values_at(found, wanted)

        yield values


def recalculated_values(path: Path, wanted: dict[str, set[tuple[int, int]]],
                        timeout: float = DEFAULT_TIMEOUT) -> dict[tuple[str, int, int], object]:
    """Recalculate the workbook at `path` (into a throwaway folder) and return the values of the
    wanted cells by (sheet, row, column), rows and columns from 1."""
    with recalculating([path], timeout) as values:
        return values(path, wanted)
