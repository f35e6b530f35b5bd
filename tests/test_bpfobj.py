"""The committed objects in bpfobj/ are exactly what clang/ builds."""

from __future__ import annotations

import shutil
import subprocess

from helpers import ROOT, require_tool, skip_or_fail


def test_bpfobj_rebuilds_byte_for_byte(tmp_path: object) -> None:
    require_tool("make")
    if not (shutil.which("clang-19") or shutil.which("clang")):
        skip_or_fail("clang is not installed (apt-get install clang-19 llvm-19)")
    result = subprocess.run(["make", "-C", str(ROOT / "clang"), "check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches the sources" in result.stdout
