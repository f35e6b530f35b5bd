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


def test_import_contracts() -> None:
    """The layers of pyproject.toml's [tool.importlinter]: each imports only downward, only
    _sys imports ctypes, the probe language stays pure."""
    command = ("import sys; from importlinter.cli import lint_imports_command as run; "
               "sys.exit(run())")
    result = subprocess.run([sys.executable, "-c", command], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_ctypes_only_under_sys() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "rawprobe").rglob("*.py")
                 if "import ctypes" in path.read_text() and path.parent.name != "_sys"]
    assert offenders == []


def test_no_module_over_600_lines_and_the_tracer_under_400() -> None:
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
             for path in (ROOT / "rawprobe").rglob("*.py")}
    over = {path: size for path, size in sizes.items() if size > 600}
    assert not over, over
    assert sizes["rawprobe/_tracer.py"] < 400
