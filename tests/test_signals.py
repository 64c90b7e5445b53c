"""Ctrl-C, SIGTERM and SIGHUP stop every long command the same way: one line, exit 128 + the signal,
no temporary file or folder left in $TMPDIR, no LibreOffice left running, an existing target
untouched, and an interrupted check never reports success.

Each command (run, exercise, verify, check) is interrupted at three moments: as soon as tracer's
handlers are installed (it is reading its options or tracing), as soon as it starts writing or
LibreOffice starts, and a little later (when it may have finished: then its output is whole).
The signals rotate over the moments and the commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from student import formulas

from tracer import api

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PREVIOUS = b"the previous file"


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (/proc/PID/status, SigCgt): tracer's main has started."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask >> (signal.SIGTERM - 1) & 1)


def wait_until(condition, proc, timeout=120) -> bool:
    """Poll until `condition()` holds (True) or the process ends first (False)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def leftover_processes(marker: str) -> list[str]:
    """Command lines of processes that mention `marker` (LibreOffice's profile path holds $TMPDIR)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text:
            found.append(text)
    return found


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A workbook to verify, and an exercise filled with formulas saved without values (check has
    LibreOffice compute them)."""
    folder = tmp_path_factory.mktemp("inputs")
    api.run("vae", hidden=2, iterations=1).save(folder / "book.xlsx")
    ex, _, _ = api.exercise("vae", "backward", folder / "ex.xlsx", hidden=2, iterations=1)
    return {"book": folder / "book.xlsx", "typed": formulas(ex, folder / "typed.xlsx")}


COMMANDS = {  # the command, its target (None: it writes nothing), the prefix of the folder it works in
    "run": (["run", "gan", "--iterations", "2", "-o", "{target}"], "target.xlsx", "tracer-xlsx-"),
    "exercise": (["exercise", "vae", "--hidden", "2", "--iterations", "2", "--blank", "backward", "-o", "{target}"],
                 "target.xlsx", "tracer-xlsx-"),
    "verify": (["verify", "{book}"], None, "tracer-lo-"),
    "check": (["check", "{typed}", "--report", "{target}"], "target.xlsx", "tracer-lo-"),
}
MOMENTS = ("started", "working", "later")


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_an_interrupted_command_leaves_nothing_behind(command, moment, inputs, tmp_path, request):
    if command in ("verify", "check"):
        request.getfixturevalue("soffice")
    args, target_name, working = COMMANDS[command]
    signum = SIGNALS[(list(COMMANDS).index(command) + MOMENTS.index(moment)) % 3]
    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    out.mkdir()
    target = out / target_name if target_name else None
    if target:
        target.write_bytes(PREVIOUS)
    args = [a.format(target=target, **inputs) for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir)})
    try:
        running = wait_until(lambda: handlers_installed(proc.pid), proc)
        if moment != "started":
            running = wait_until(lambda: any(p.name.startswith(working) for p in tmpdir.iterdir()), proc)
        if moment == "later":
            time.sleep(0.7)
            running = proc.poll() is None
        assert running or moment == "later", f"{command} ended before the moment '{moment}'"
        if running:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in stderr + stdout
    if proc.returncode == 0:  # it finished first (only "later" allows it): its output is whole
        assert moment == "later" and (target is None or target.read_bytes()[:2] == b"PK"), stderr
    else:
        assert proc.returncode == 128 + signum, (proc.returncode, stderr)
        line = f"interrupted by {signal.Signals(signum).name}: stopped; nothing half-written is left"
        assert stderr.splitlines() == [line], stderr
        assert "OK" not in stdout and "score:" not in stdout and "wrote" not in stdout, stdout
        if target:
            assert target.read_bytes() == PREVIOUS
    assert list(tmpdir.iterdir()) == []
    assert [p.name for p in out.iterdir()] == ([target.name] if target else [])
    assert leftover_processes(str(tmpdir)) == []
