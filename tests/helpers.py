"""Shared test helpers: compiling targets, running rawprobe, deciding when a test may skip.

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
from typing import Any

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


def require_feature(feature: Any) -> None:
    """Skip a test that needs a kernel feature (a :class:`rawprobe._sys.features.Feature`) on a
    kernel older than the feature's first release; on a kernel that should have it, a missing
    feature is a failure, not a skip."""
    refusal = feature.check()
    if refusal is None:
        return
    if feature.expected():
        pytest.fail(f"Linux {feature.minimum}+ should have {feature.description}, and this "
                    f"kernel ({os.uname().release}) refuses it: {refusal}")
    skip_or_fail(f"{feature.description} needs Linux {feature.minimum}+")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed")
        raise AssertionError("unreachable")
    return path


CompileC = Callable[..., Path]


def build_c(
    source: str,
    name: str = "target",
    flags: Sequence[str] = (),
    cxx: bool = False,
    suffix: str = "",
    compiler: str | None = None,
) -> Path:
    """Compile C (or C++) source text into an executable or library, cached by content.

    ``compiler`` names another compiler than gcc (g++ for ``cxx``): ``clang-19``, say.
    """
    compiler = compiler or ("g++" if cxx else "gcc")
    require_tool(compiler)
    key = hashlib.sha256("\0".join([compiler, source, *flags]).encode()).hexdigest()[:16]
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


# -- running the command-line tool ------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def rawprobe_argv(*args: str) -> list[str]:
    """The argv that runs this checkout's rawprobe with this interpreter."""
    import sys

    return [sys.executable, "-m", "rawprobe", *args]


def run_rawprobe(
    *args: str, timeout: float = 60, check_status: int | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run rawprobe to completion, capturing text output."""
    result = subprocess.run(
        rawprobe_argv(*args), capture_output=True, text=True, timeout=timeout, **kwargs  # type: ignore[call-overload]
    )
    if check_status is not None:
        assert result.returncode == check_status, (
            f"exit {result.returncode}, wanted {check_status}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


ADD_SOURCE = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) int add(int a, int b) { return a + b; }
int main(int argc, char **argv) {
    int times = argc > 1 ? atoi(argv[1]) : 1;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 0;
    int sum = 0;
    if (pause_ms) usleep(pause_ms * 1000);
    for (int i = 0; i < times; i++) sum += add(i + 1, 2);
    return sum == 0 && times > 0;
}
"""


_RUNNING: list[Background] = []  # started, not known to be ended


class Background:
    """rawprobe running in the background; ``ready()`` waits until its probes are planted.
    One a test left running (it failed before ending it) is ended after the test
    (:func:`end_background`)."""

    def __init__(self, *args: str, **kwargs: object) -> None:
        self.proc = subprocess.Popen(
            rawprobe_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            **kwargs,  # type: ignore[call-overload]
        )
        self.stderr_lines: list[str] = []
        self._partial = ""  # the start of a line read from stderr, not yet ended
        _RUNNING.append(self)

    def ready(self, timeout: float = 30) -> None:
        import selectors
        import time

        assert self.proc.stderr is not None
        # Read the descriptor itself: a buffered readline() may take several lines at once,
        # and the selector would then wait for more while the line looked for sits read.
        fd = self.proc.stderr.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                continue
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            *lines, self._partial = (self._partial + chunk).split("\n")
            self.stderr_lines += [line + "\n" for line in lines]
            if any(line.startswith("rawprobe: tracing") for line in lines):
                return
        self.proc.kill()
        out, err = self.proc.communicate()
        raise AssertionError(
            "rawprobe did not start tracing:\n" + "".join(self.stderr_lines) + self._partial
            + err + out
        )

    def finish(self, sig: int | None = None, timeout: float = 30) -> tuple[int, str, str]:
        """Send ``sig`` (if any), wait, and return (status, stdout, all of stderr)."""
        if sig is not None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, "".join(self.stderr_lines) + self._partial + err


def bpf_link_ids_of(pid: int) -> set[int]:
    """Ids of the BPF links process ``pid`` holds open (from /proc/PID/fdinfo)."""
    ids = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) != "anon_inode:bpf_link":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("link_id:"):
                ids.add(int(line.split()[1]))
    return ids


def existing_bpf_link_ids() -> set[int]:
    """Ids of every BPF link on the host, as bpftool lists them."""
    import json

    bpftool = require_tool("bpftool")
    links = json.loads(
        subprocess.run([bpftool, "-j", "link", "list"], capture_output=True, text=True,
                       check=True).stdout or "[]"
    )
    return {int(link["id"]) for link in links}


# -- the kernel's own uprobe tracer, as an oracle ---------------------------------------------

TRACEFS = Path("/sys/kernel/tracing")


def tracefs_write(file: str, text: str) -> None:
    """Append to a tracefs control file (Python's text-mode append is refused there)."""
    fd = os.open(TRACEFS / file, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class KernelTracer:
    """uprobe_events definitions in a group of the test's own, recorded in a tracing instance
    of its own (so other users of tracefs neither see nor disturb its buffer).

    ``definitions`` are kernel lines without the group, e.g. ``p:ev /path:0x1139 a=%di``.
    ``comm``: record only hits in tasks of that name (a probe in libc is hit by every
    process, rawprobe's own included, and the buffer would overflow).
    """

    def __init__(self, definitions: Sequence[str], comm: str | None = None) -> None:
        self.comm = comm
        if not (TRACEFS / "uprobe_events").exists():
            skip_or_fail("tracefs is not mounted at /sys/kernel/tracing")
        self.group = f"rporacle_{os.getpid()}"
        self.instance = TRACEFS / "instances" / self.group
        self.events: list[str] = []
        try:
            for definition in definitions:
                head, rest = definition.split(" ", 1)
                kind, event = head.split(":", 1)
                tracefs_write("uprobe_events", f"{kind}:{self.group}/{event} {rest}\n")
                self.events.append(event)
        except BaseException:
            self._remove()
            raise

    def __enter__(self) -> KernelTracer:
        self.instance.mkdir(exist_ok=True)
        if self.comm is not None:
            for event in self.events:
                (self.instance / "events" / self.group / event / "filter").write_text(
                    f'comm == "{self.comm[:15]}"')
        (self.instance / "events" / self.group / "enable").write_text("1")
        (self.instance / "tracing_on").write_text("1")
        return self

    def lines(self) -> list[tuple[str, str]]:
        """(event, arguments) of each recorded hit, in order."""
        return [(event, arguments) for _, event, arguments in self.records()]

    def records(self) -> list[tuple[int, str, str]]:
        """(pid, event, arguments) of each recorded hit, in order: probes are host-wide, and
        other processes may run the same program meanwhile."""
        import re

        result = []
        for line in (self.instance / "trace").read_text().splitlines():
            if line.startswith("#"):
                continue
            task = re.match(r"\s*.*?-(\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]", line)
            for event in self.events:
                marker = f" {event}: ("
                if marker in line:
                    after = line.split(marker, 1)[1]
                    result.append((int(task.group(1)) if task else -1, event,
                                   after.split(") ", 1)[1] if ") " in after else ""))
        return result

    def _remove(self) -> None:
        for event in self.events:
            tracefs_write("uprobe_events", f"-:{self.group}/{event}\n")
        self.events = []

    def __exit__(self, *_exc: object) -> None:
        try:
            (self.instance / "events" / self.group / "enable").write_text("0")
            self.instance.rmdir()
        finally:
            self._remove()


def end_background() -> None:
    """End every :class:`Background` rawprobe a test left running: SIGTERM (it removes its
    probes), then SIGKILL."""
    import signal

    running = list(_RUNNING)
    _RUNNING.clear()
    for background in running:
        proc = background.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
