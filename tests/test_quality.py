"""Lint and type checks are part of the test command."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True)


def test_ruff() -> None:
    result = run("ruff", "check", "rawprobe", "tests", "benchmarks", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_the_package() -> None:
    result = run("mypy", "rawprobe")
    assert result.returncode == 0, result.stdout + result.stderr
