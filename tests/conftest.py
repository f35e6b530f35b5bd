"""Shared test helpers: compiling target programs, and deciding when a kernel test may skip.

Kernel tests attach real probes to programs the tests compile. They skip on a host that cannot
trace (not root, no BPF), unless ``RAWPROBE_REQUIRE_BPF=1`` is set, as CI does: then a test that
would skip fails instead, so a broken host cannot pass silently.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REQUIRE_BPF = os.environ.get("RAWPROBE_REQUIRE_BPF") == "1"
BUILD_CACHE = Path(os.environ.get("RAWPROBE_TEST_BUILD", "/tmp/rawprobe-test-build"))


def skip_or_fail(reason: str) -> None:
    """Skip the calling test, or fail it when the host is required to support tracing."""
    if REQUIRE_BPF:
        pytest.fail(f"RAWPROBE_REQUIRE_BPF=1 but: {reason}")
    pytest.skip(reason)


def require_kernel_tracing() -> None:
    """Skip (or fail, under RAWPROBE_REQUIRE_BPF=1) unless this host can attach uprobes."""
    if os.geteuid() != 0:
        skip_or_fail("kernel tests need root")
    if not os.path.exists("/sys/bus/event_source/devices/uprobe/type"):
        skip_or_fail("the kernel has no uprobe PMU")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        skip_or_fail("the kernel has no BTF (/sys/kernel/btf/vmlinux)")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed")
        raise AssertionError("unreachable")
    return path


CompileC = Callable[..., Path]


@pytest.fixture(scope="session")
def compile_c() -> CompileC:
    """Compile a C (or C++) source text into an executable or library, cached by content.

    Call as ``compile_c(source, name="main", flags=("-O0",), cxx=False)``; returns the output path.
    """

    def build(
        source: str,
        name: str = "target",
        flags: Sequence[str] = (),
        cxx: bool = False,
        suffix: str = "",
    ) -> Path:
        compiler = "g++" if cxx else "gcc"
        require_tool(compiler)
        key = hashlib.sha256(
            "\0".join([compiler, source, *flags]).encode()
        ).hexdigest()[:16]
        out_dir = BUILD_CACHE / key
        out = out_dir / (name + suffix)
        if out.exists():
            return out
        out_dir.mkdir(parents=True, exist_ok=True)
        src = out_dir / (name + (".cc" if cxx else ".c"))
        src.write_text(source)
        tmp = out_dir / (name + suffix + ".tmp")
        subprocess.run([compiler, *flags, "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
        return out

    return build
