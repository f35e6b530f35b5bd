"""Kernel tests: real probes on programs the tests compile. Each one needs a tracing host."""

from __future__ import annotations

import pytest
from helpers import require_kernel_tracing


@pytest.fixture(autouse=True)
def _tracing_host() -> None:
    require_kernel_tracing()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
