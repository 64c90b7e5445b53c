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
    src = Path(src).resolve()
    outdir = Path(outdir).resolve()
    target = outdir / (src.stem + "." + to)
    if target == src:
        raise TracerError(f"recalculation would overwrite {src.name}: choose another folder")
    soffice = find_soffice()
    outdir.mkdir(parents=True, exist_ok=True)
    with temporary_folder("tracer-lo-") as tmp:
        profile = tmp / "profile"
        _write_profile(profile)
        scratch = tmp / "tmp"  # LibreOffice's own temporary files (lu*.tmp) go here, not to $TMPDIR
        scratch.mkdir()
        # Convert a copy with a plain name in a fresh folder: the output name
        # is then known and nothing in outdir is overwritten by surprise.
        work = tmp / "in"
        work.mkdir()
        copy = work / "book.xlsx"
        shutil.copyfile(src, copy)
        converted = tmp / "out"
        cmd = [
            soffice,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless", "--norestore",
            "--convert-to", to,
            "--outdir", str(converted),
            str(copy),
        ]
        result = _run(cmd, timeout, env={**os.environ, "TMPDIR": str(scratch), "TMP": str(scratch),
                                         "TEMP": str(scratch)})
        produced = converted / f"book.{to}"
        if result.returncode != 0 or not produced.is_file():
            detail = " ".join((result.stderr or result.stdout or "").split())[:300]
            raise TracerError(
                f"LibreOffice could not {'recalculate' if to == 'xlsx' else 'convert'} {src.name} "
                f"(exit code {result.returncode}){': ' + detail if detail else ''}"
            )
        shutil.move(str(produced), target)
    return target


def recalculated_values(path: Path, wanted: dict[str, set[tuple[int, int]]],
                        timeout: float = DEFAULT_TIMEOUT) -> dict[tuple[str, int, int], object]:
    """Recalculate the workbook at `path` (into a throwaway folder) and return the values of the
    wanted cells by (sheet, row, column), rows and columns from 1."""
    with temporary_folder("tracer-lo-values-") as tmp:
        return values_at(recalculate(path, tmp, timeout=timeout), wanted)
