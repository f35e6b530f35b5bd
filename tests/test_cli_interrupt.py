"""Ctrl-C at any moment of a run: one line and status 130, never a traceback.

A harness runs ``python -m rawprobe`` (the console entry point's ``run()``) and sends itself
SIGINT at a chosen moment: at the N-th module imported once rawprobe's command code runs (an
interrupted import is the classic traceback), or at the N-th function call from ``run()`` on,
to its very end. Before ``run()`` there is only the interpreter's own start-up and the import
of the package, which no program can guard.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ADD_SOURCE, ROOT, build_c

HARNESS = r"""
import os, signal, sys
mode, target = sys.argv[1], int(sys.argv[2])
count = [0]
armed = [False]

def fire():
    count[0] += 1
    if count[0] == target:
        os.kill(os.getpid(), signal.SIGINT)

def hook(event, args):
    if event == "import" and mode == "import":
        if args[0] == "rawprobe.cli":
            armed[0] = True  # the next imports are made by the command's code
        elif armed[0]:
            fire()

def profile(frame, event, arg):
    code = frame.f_code
    if event == "call" and not armed[0] and code.co_name == "run" and \
            code.co_filename.endswith(os.path.join("cli", "__init__.py")):
        armed[0] = True  # from the call of run() on (its first line is the entry point's)
        return
    if armed[0] and event in ("call", "c_call"):
        fire()

sys.addaudithook(hook)
if mode == "call":
    sys.setprofile(profile)
sys.argv = ["rawprobe", *sys.argv[3:]]
import runpy
try:
    runpy.run_module("rawprobe", run_name="__main__", alter_sys=True)
finally:
    sys.setprofile(None)
    sys.stderr.write("[events %d]\n" % count[0])
"""


@pytest.fixture(scope="module")
def program() -> Path:
    return build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))


def _run(mode: str, target: int, *args: str) -> tuple[int, str]:
    env = {**os.environ, "RAWPROBE_CACHE_DIR": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", HARNESS, mode, str(target), *args],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    return result.returncode, result.stderr


def _events(mode: str, *args: str) -> int:
    status, stderr = _run(mode, 1 << 62, *args)
    assert status == 0, stderr
    return int(stderr.rsplit("[events ", 1)[1].split("]", 1)[0])


@pytest.mark.parametrize("mode", ["import", "call"])
def test_ctrl_c_at_any_moment(program: Path, mode: str) -> None:
    args = ("list", str(program))
    total = _events(mode, *args)
    assert total > (50 if mode == "import" else 10_000)
    # Every import in turn; calls spread over the run, the last ones included.
    if mode == "import":
        moments = list(range(1, total + 1, max(1, total // 25)))
    else:
        moments = sorted({2, 3, 5, 10, 30, 100, 300, 1_000, 3_000, *(
            total * step // 12 for step in range(1, 12)), total - 50, total - 5, total})
    for moment in moments:
        status, stderr = _run(mode, moment, *args)
        assert "Traceback" not in stderr, (moment, stderr)
        if status == 130:
            assert stderr.startswith("rawprobe: interrupted\n"), (moment, stderr)
        else:  # the run was over: Ctrl-C changed nothing
            assert status == 0 and moment > total - 1_000, (moment, status, stderr)
