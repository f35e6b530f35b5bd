"""What every scenario shares: the run's context, the processes it starts, and its results.

Every process a scenario starts is a :class:`Spawned`, used as a context manager, so it is
stopped (SIGINT, then SIGKILL) and reaped on every way out, including a failed measurement or
Ctrl-C: tracers left behind would keep probes planted on a host others share.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- peers ----------------------------------------------------------------------------------

PEER_PATHS = {
    "bpftrace": ("/usr/bin/bpftrace", "bpftrace"),
    "bcc-trace": ("/usr/sbin/trace-bpfcc", "trace-bpfcc"),
    "bcc-funccount": ("/usr/sbin/funccount-bpfcc", "funccount-bpfcc"),
    "perf": ("/usr/bin/perf", "perf"),
    "strace": ("/usr/bin/strace", "strace"),
}


def find_peers(wanted: Sequence[str] | None) -> dict[str, str]:
    """The installed peer tools (name -> path), limited to ``wanted`` when given."""
    found = {}
    for name, (path, command) in PEER_PATHS.items():
        if wanted is not None and name not in wanted:
            continue
        located = path if os.access(path, os.X_OK) else shutil.which(command)
        if located:
            found[name] = located
    return found


def bcc_kernel_source(build: Path) -> tuple[str | None, str]:
    """Kernel headers for bcc, which compiles its programs against them at run time.

    Returns ``(BCC_KERNEL_SOURCE or None, note)``. None when the running kernel has its own
    (``/lib/modules/RELEASE/build`` or ``/sys/kernel/kheaders.tar.xz``), or when there are no
    headers at all. Otherwise the newest Debian ``linux-headers-*`` pair in /usr/src (a common
    tree and an architecture tree) merged as symbolic links into one tree, as bcc wants it:
    uprobe programs only need ``struct pt_regs`` and the helpers, which these kernels share.
    """
    release = os.uname().release
    if os.path.exists(f"/lib/modules/{release}/build") or os.path.exists(
            "/sys/kernel/kheaders.tar.xz"):
        return None, ""
    source = Path("/usr/src")
    arch_trees = sorted(path for path in source.glob("linux-headers-*-amd64")
                        if (path / "include" / "generated").is_dir())
    for arch in reversed(arch_trees):
        version = arch.name.removeprefix("linux-headers-").split("-")[:2]
        common = source / f"linux-headers-{'-'.join(version)}-common"
        if not common.is_dir():
            continue
        merged = build / f"bcc-headers-{arch.name}"
        if not merged.is_dir():
            partial = build / f"bcc-headers-{arch.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            subprocess.run(["cp", "-rs", f"{common}/.", f"{partial}/"], check=True)
            subprocess.run(["cp", "-rsf", f"{arch}/.", f"{partial}/"], check=True)
            partial.rename(merged)
        return str(merged), (f"bcc has no kernel headers for Linux {release}: it compiled "
                             f"against {arch.name} (BCC_KERNEL_SOURCE)")
    return None, f"bcc has no kernel headers for Linux {release}: it cannot run here"


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


# -- a staged copy of rawprobe --------------------------------------------------------------


class Stage:
    """This checkout's rawprobe copied as an installed wheel lays it out (``rawprobe/`` with
    ``rawprobe/bpfobj/``), byte-compiled as pip compiles it, with a symbol cache of its own.

    The command-line runs use it, so their start-up is that of an installed rawprobe (the
    checkout itself may have no bytecode: ``PYTHONDONTWRITEBYTECODE`` is often set) and the
    user's own symbol cache is neither used nor touched.
    """

    def __init__(self, directory: Path, compiled: bool = True) -> None:
        self.directory = directory
        self.cache_dir = directory / "symbol-cache"
        package = directory / "rawprobe"
        shutil.copytree(ROOT / "rawprobe", package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(ROOT / "bpfobj", package / "bpfobj")
        self.cache_dir.mkdir()
        if compiled:
            compileall.compile_dir(str(package), quiet=1)

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        env.update(PYTHONPATH=str(self.directory), RAWPROBE_CACHE_DIR=str(self.cache_dir))
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rawprobe", *args]

    def script(self, name: str, *args: str) -> list[str]:
        """Run one of the benchmark's helper scripts against the staged rawprobe."""
        return [sys.executable, str(BENCHMARKS / name), *args]


# -- processes ------------------------------------------------------------------------------


class LineReader:
    """Lines from a file descriptor, with a timeout on each wait."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(fd, selectors.EVENT_READ)
        self.closed = False

    def readline(self, timeout: float) -> str | None:
        """The next line (without its newline), or None at end of file or on timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            if self.closed or not self._selector.select(left):
                return None
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # a pty whose other side closed
                data = b""
            if not data:
                self.closed = True
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def wait_for(self, predicate: Any, timeout: float) -> str | None:
        """The first line for which ``predicate(line)`` holds, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            if predicate(line):
                return line

    def close(self) -> None:
        self._selector.close()


class Spawned:
    """A process started by a benchmark, stopped and reaped when its ``with`` block ends.

    Args:
        argv: The command.
        stdout: ``"pipe"`` (read it with :attr:`out`), ``"pty"`` (a terminal, as a user
            sees it: line-buffered), a path to write to, or ``None`` (/dev/null).
        stderr: ``"pipe"`` (collected, see :meth:`stop`), ``"stdout"`` (with stdout), a path,
            or ``None``.
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, stdout: str | Path | None = "pipe",
                 stderr: str | Path | None = "pipe", stdin: bool = False) -> None:
        self.argv = list(argv)
        self.started = time.monotonic()
        self.started_ns = time.monotonic_ns()
        self.stderr_text = ""
        self.stdout_rest: list[str] = []  # stdout lines not yet read when it was stopped
        self._stderr_lines: list[str] = []
        self.exit_signal = signal.SIGINT  # what ending the ``with`` block sends
        self.status: int | None = None
        self._files: list[IO[Any]] = []
        self._pty_parent: int | None = None
        out: Any = subprocess.DEVNULL
        if stdout == "pipe":
            out = subprocess.PIPE
        elif stdout == "pty":
            parent, child = os.openpty()
            self._pty_parent, out = parent, child
        elif stdout is not None:
            out = open(stdout, "wb")  # noqa: SIM115 - closed in stop()
            self._files.append(out)
        err: Any = subprocess.DEVNULL
        if stderr == "stdout":
            err = subprocess.STDOUT
        elif stderr == "pipe":
            err = subprocess.PIPE
        elif stderr is not None:
            err = open(stderr, "wb")  # noqa: SIM115 - closed in stop()
            self._files.append(err)
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=env, cwd=cwd,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid
        if stdout == "pty":
            os.close(out)
            assert self._pty_parent is not None
            self.out = LineReader(self._pty_parent)
        elif stdout == "pipe":
            assert self.proc.stdout is not None
            self.out = LineReader(self.proc.stdout.fileno())
        self.err = LineReader(self.proc.stderr.fileno()) if stderr == "pipe" and \
            self.proc.stderr is not None else None

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to end; its status, or None."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        """Send ``sig`` if the process still runs, wait for it (SIGKILL after ``timeout``
        seconds), and return its status. Its stdout (pipe or terminal) and stderr pipe are
        read meanwhile, so a process blocked writing to them can still end: what stderr said
        goes to :attr:`stderr_text`, what stdout said to :attr:`stdout_rest`."""
        if self.status is not None:
            return self.status
        readers = [(reader, sink) for reader, sink in ((self.err, self._stderr_lines),
                                                       (getattr(self, "out", None),
                                                        self.stdout_rest))
                   if reader is not None]

        def drain(wait: float) -> None:
            for reader, sink in readers:
                line = reader.readline(wait)
                while line is not None:
                    sink.append(line)
                    line = reader.readline(0.0)

        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if readers:
                    drain(0.02)
                else:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
            drain(0.05)
            self.stderr_text = "\n".join(self._stderr_lines)
        finally:
            self.status = self.proc.returncode
            for file in self._files:
                file.close()
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            if self._pty_parent is not None:
                os.close(self._pty_parent)
                self._pty_parent = None
        return self.status if self.status is not None else -1

    def cpu_seconds(self) -> float:
        """User + system CPU time the process (every thread) has used so far."""
        return cpu_seconds(self.pid)

    def __enter__(self) -> Spawned:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.status is None:
            self.stop(self.exit_signal, timeout=30)


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_idle(pid: int, quiet: float = 0.3, timeout: float = 60) -> float:
    """Wait until process ``pid`` has used (almost) no CPU for ``quiet`` seconds: a tracer
    that has caught up with its events. Returns how long it took."""
    started = time.monotonic()
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.05)
        now_cpu = cpu_seconds(pid)
        if now_cpu - last > 1.5 / CLOCK_TICKS:
            last, since = now_cpu, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        if not os.path.exists(f"/proc/{pid}"):
            break
    return time.monotonic() - started


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (``VmRSS``, ``VmHWM``), or 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def count_lines(path: Path, skip: Any = None) -> int:
    """Lines in a file, leaving out those for which ``skip(line)`` holds."""
    if not path.exists():
        return 0
    if skip is None:
        with open(path, "rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    with open(path, errors="replace") as file:
        return sum(1 for line in file if not skip(line))


def bpftrace_account(tracer: Spawned, output: Path) -> tuple[int, int]:
    """(events bpftrace printed into ``output``, events it says it lost). Event lines are
    the ones starting with a digit; bpftrace writes "Lost N events" among them."""
    delivered = lost = 0
    if output.exists():
        with open(output, errors="replace") as file:
            for line in file:
                if line[:1].isdigit():
                    delivered += 1
                elif line.startswith("Lost "):
                    lost += int(line.split()[1])
    lost += sum(int(n) for n in re.findall(r"Lost (\d+) events", tracer.stderr_text))
    return delivered, lost


def evict_from_page_cache(paths: Sequence[str | Path]) -> int:
    """Drop these files (directories: every file under them) from the page cache with
    posix_fadvise(DONTNEED); the kernel keeps pages that running processes map. Only these
    files are affected, nothing else on the host. Returns how many files were advised."""
    count = 0

    def advise(path: str) -> None:
        nonlocal count
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        except OSError:
            pass
        finally:
            os.close(fd)

    for path in paths:
        path = str(path)
        if os.path.isdir(path):
            for directory, _dirs, files in os.walk(path):
                for name in files:
                    advise(os.path.join(directory, name))
        elif os.path.exists(path):
            advise(path)
    return count


def shared_libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads (from ldd), resolved."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    libraries = []
    for line in out.splitlines():
        parts = line.split("=>")
        candidate = (parts[1] if len(parts) > 1 else parts[0]).split("(")[0].strip()
        if candidate.startswith("/"):
            libraries.append(os.path.realpath(candidate))
    return libraries


# -- the loop target ------------------------------------------------------------------------


@dataclass
class LoopRun:
    """What the ``loop`` target reported."""

    elapsed_ns: float
    cpu_ns: float
    calls: int


def parse_loop(line: str) -> LoopRun:
    fields = dict(part.split("=", 1) for part in line.split())
    return LoopRun(float(fields["elapsed_ns"]), float(fields["cpu_ns"]), int(fields["calls"]))


class LoopTarget(Spawned):
    """The ``loop`` program (see ``common.LOOP_SOURCE``), started waiting for its probe when
    ``wait``; with ``runs`` > 1, :meth:`next_run` starts each run after the first."""

    def __init__(self, loop: Path, calls: int, rate: int, mode: str, *, wait: bool = True,
                 linger_ms: int = 0, runs: int = 1) -> None:
        argv = [str(loop), str(calls), str(rate), mode, "wait" if wait else "now",
                str(linger_ms), str(runs)]
        super().__init__(argv, stdout="pipe", stderr="pipe", stdin=runs > 1)
        self.exit_signal = signal.SIGTERM
        if wait and self.out.readline(10) != "waiting":
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"{loop} did not start")

    def next_run(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def result(self, timeout: float, tracer: Spawned | None = None) -> LoopRun:
        """The loop's report, once it has run (waits up to ``timeout`` seconds; gives up
        early when ``tracer`` ends first)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.out.wait_for(lambda text: text.startswith("elapsed_ns="), 0.25)
            if line is not None:
                return parse_loop(line)
            if self.out.closed or time.monotonic() > deadline or (
                    tracer is not None and not tracer.running()):
                break
        self.stop(signal.SIGKILL)
        why = "the target never reported: was it probed?"
        if tracer is not None and not tracer.running():
            tracer.stop()
            why = f"{tracer.argv[0]} ended early: {tracer.stderr_text.strip()[-400:]}"
        raise MeasurementError(why)


def capture_chunks(loop: Path, calls: int) -> tuple[list[bytes], list[Any]]:
    """Ring-buffer chunks of ``p:LOOP:hit_nop5 a=%di:s64 b=%si:s64`` over ``calls`` calls of a
    ``loop`` target, read as a live reader reads them (whatever is there at each wake-up), each
    cut at its last whole record; and the tracer's record layouts, to decode them with."""
    from rawprobe._bpf.records import Decoder
    from rawprobe._tracer import Tracer

    chunks: list[bytes] = []
    with LoopTarget(loop, calls, 0, "nop5", wait=True, linger_ms=60_000) as target, \
            Tracer(pid=target.pid, ring_size=32 << 20) as tracer:
        tracer.add(f"p:{loop}:hit_nop5 a=%di:s64 b=%si:s64")
        tracer.start()
        session = tracer._session
        assert session is not None
        ring = session.ring  # type: ignore[attr-defined]
        decoder = Decoder(tracer.layouts)
        done = False
        while True:
            ring.wait(0.05)
            chunk = ring.read()
            if chunk:
                consumed = decoder.decode_chunk(chunk)[1]
                chunks.append(chunk[:consumed])
                ring.consume(consumed)
            elif done:
                break
            done = done or target.out.readline(0) is not None
        return chunks, tracer.layouts


class MeasurementError(RuntimeError):
    """A measurement could not be taken (a tool failed to start, a target never ran)."""


# -- results --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Goal:
    """One of the issue's goals, with what was measured against it.

    Attributes:
        text: The goal as the issue states it.
        measured: What was measured, in words and numbers.
        status: ``met``, ``missed``, ``inconclusive`` (the figures cannot tell: see the
            measured text), or ``not measured`` (a peer missing, a step skipped).
    """

    text: str
    measured: str
    status: str


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "|".join("---" for _ in self.headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.headers)]
        out = [self.title, "  ".join(h.ljust(w) for h, w in zip(self.headers, widths,
                                                                 strict=True))]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(out)


@dataclass
class ScenarioResult:
    """A scenario's tables, goals and notes, and its headline numbers (for machines)."""

    number: int
    title: str
    method: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def markdown(self) -> str:
        parts = [f"## {self.number}. {self.title}", "", self.method, ""]
        if self.error:
            parts += [f"**Failed:** `{self.error}`", ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        if self.goals:
            parts += ["| goal | measured | status |", "|---|---|---|"]
            parts += [f"| {g.text} | {g.measured} | **{g.status}** |" for g in self.goals]
            parts.append("")
        parts += [f"- {note}" for note in self.notes]
        parts.append(f"\n_(scenario took {self.seconds:.0f} s)_\n")
        return "\n".join(parts)


def ratio(value: float, reference: float) -> str:
    if not reference or reference != reference or value != value:
        return "-"
    return f"{value / reference:.2f}x"


def goal_status(ok: bool | None) -> str:
    return "not measured" if ok is None else "met" if ok else "missed"


@dataclass
class Figure:
    """A measured rate (higher is better), or only a lower bound on it.

    Attributes:
        value: The figure.
        at_least: The tracer's own limit was never reached (the target could not call any
            faster with it attached, and it lost nothing): the true figure is this or more.
        unusual: Why the figure is not to be trusted on its own (its tool behaved unlike in
            its earlier runs, say), or "".
    """

    value: float
    at_least: bool = False
    unusual: str = ""

    def text(self) -> str:
        return ("≥ " if self.at_least else "") + f"{self.value:,.0f}"


def rate_goal(text: str, ours: Figure | None, theirs: Figure | None, factor: float,
              theirs_name: str) -> Goal:
    """The goal "ours >= factor x theirs" for rates, judged honestly: met only when the lower
    bound of the ratio reaches ``factor``; missed when its upper bound does not; otherwise
    inconclusive (a figure that is only a bound, or a peer that behaved unlike itself)."""
    if ours is None or theirs is None or not theirs.value:
        return Goal(text, "-", "not measured")
    value = ours.value / theirs.value
    measured = (f"{'≥ ' if ours.at_least and not theirs.at_least else ''}"
                f"{'≤ ' if theirs.at_least and not ours.at_least else ''}{value:.2f}x "
                f"({ours.text()} vs {theirs.text()}/s)")
    if theirs.unusual:
        return Goal(text, f"{measured}; {theirs_name} {theirs.unusual}", "inconclusive")
    if theirs.at_least:
        # Their true rate is higher: the ratio is at most this.
        if value < factor and not ours.at_least:
            return Goal(text, measured, "missed")
        return Goal(text, f"{measured}; {theirs_name} was limited by the target, not by "
                    "itself (its figure is a lower bound)", "inconclusive")
    if value >= factor:
        return Goal(text, measured, "met")
    if ours.at_least:
        return Goal(text, f"{measured}; rawprobe was limited by the target",
                    "inconclusive")
    return Goal(text, measured, "missed")


HISTORY = BENCHMARKS / "peer-history.json"


class PeerHistory:
    """The peers' figures of earlier full runs on this host (``peer-history.json``), to tell a
    peer that behaved unlike itself in this run: a ratio against such a figure is not
    evidence of anything."""

    def __init__(self, path: Path = HISTORY) -> None:
        self.path = path
        try:
            self.data: dict[str, list[float]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.new: dict[str, float] = {}

    def check(self, metric: str, value: float, tolerance: float = 0.35) -> str:
        """"" when ``value`` is like this metric's earlier figures (or there are too few to
        tell), else a sentence saying how it differs. The value is kept for the history."""
        self.new[metric] = value
        earlier = self.data.get(metric, [])
        if len(earlier) < 2 or value != value:
            return ""
        typical = statistics.median(earlier)
        if typical and abs(value - typical) / typical > tolerance:
            return (f"did {value:,.3g} here, {typical:,.3g} in its earlier runs (median of "
                    f"{len(earlier)})")
        return ""

    def save(self) -> None:
        for metric, value in self.new.items():
            if value == value:
                self.data[metric] = [*self.data.get(metric, []), value][-10:]
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")


@dataclass
class Context:
    """What a scenario needs: the mode, the peers, the targets, and a scratch directory."""

    quick: bool
    peers: dict[str, str]
    slow_peers: bool
    workdir: Path
    stage: Stage
    loop: Path
    many: Path
    shared: dict[str, Any] = field(default_factory=dict)
    bcc_source: str | None = None  # BCC_KERNEL_SOURCE for bcc's tools
    history: PeerHistory = field(default_factory=PeerHistory)
    host_notes: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)

    def peer_env(self, peer: str) -> dict[str, str]:
        """The environment to run a peer tool in."""
        env = dict(os.environ)
        if peer.startswith("bcc") and self.bcc_source:
            env["BCC_KERNEL_SOURCE"] = self.bcc_source
        if peer.startswith("bcc"):
            env["PYTHONUNBUFFERED"] = "1"  # bcc's tools print with print(): see every line
        return env

    def log(self, message: str) -> None:
        print(f"  .. {time.monotonic() - self.began:6.1f} s  {message}", file=sys.stderr,
              flush=True)

    def scratch(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.workdir))
