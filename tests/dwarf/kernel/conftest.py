"""Kernel tests of the DWARF reader: its fetch-args planted through the kernel's own uprobe
tracer (tracefs ``uprobe_events``), next to perf probe's, on programs the tests build."""

from __future__ import annotations

import pytest
from helpers import require_kernel_tracing


@pytest.fixture(autouse=True)
def _tracing_host() -> None:
    require_kernel_tracing()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/dwarf/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
