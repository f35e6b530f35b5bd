"""Kernel tests of the DWARF reader: its fetch-args planted through the kernel's own uprobe
tracer (tracefs ``uprobe_events``), next to perf probe's, on programs the tests build."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import TRACEFS, require_kernel_tracing


@pytest.fixture(scope="session", autouse=True)
def _tracefs_mounted() -> None:
    """Mount tracefs where KernelTracer looks for it, when it is not (root can)."""
    if os.geteuid() == 0 and not (TRACEFS / "uprobe_events").exists() and TRACEFS.is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=False,
                       capture_output=True)


@pytest.fixture(autouse=True)
def _tracing_host() -> None:
    require_kernel_tracing()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/dwarf/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
