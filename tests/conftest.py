"""Fixtures shared by every test; the helpers themselves live in helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import *  # noqa: F403 - tests written against conftest's names keep working
from helpers import ADD_SOURCE, CompileC, build_c, end_background


@pytest.fixture(autouse=True)
def _no_background_left() -> Iterator[None]:
    """A test that fails while rawprobe runs in the background does not leave it running."""
    yield
    end_background()


@pytest.fixture(scope="session")
def compile_c() -> CompileC:
    """Compile a C (or C++) source text, cached by content:
    ``compile_c(source, name="main", flags=("-O0",), cxx=False, suffix="")`` → path."""
    return build_c


@pytest.fixture(scope="session")
def add_program() -> Path:
    """``main [TIMES [PAUSE_MS]]``: sleeps PAUSE_MS, then calls add(i + 1, 2) TIMES times."""
    return build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))


@pytest.fixture
def private_symbol_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symbol caches go to this run's temporary directory, and no debug root comes from the
    environment."""
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "symcache"))
    monkeypatch.delenv("RAWPROBE_DEBUG_ROOT", raising=False)
