"""The tracefs files the tracefs backend and ``rawprobe probes`` use.

- ``uprobe_events``: one definition per write, ``p:GROUP/EVENT PATH:0xOFFSET[(0xREF)] ARGS`` or
  ``r:...``, and ``-:GROUP/EVENT`` to remove one (Documentation/trace/uprobetracer.rst). Python's
  ``open(path, "a")`` seeks to the end first, which tracefs refuses with EINVAL, so writes go
  through ``os.open(O_WRONLY | O_APPEND)`` and ``os.write``.
- ``events/GROUP/EVENT/id`` and ``.../format``: the event's type number (what
  ``perf_event_open(PERF_TYPE_TRACEPOINT)`` takes as ``config``) and its record layout.
- ``error_log`` (Linux 5.4+): why the kernel refused a definition, with a caret under the spot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
import weakref
from collections.abc import Sequence

from .. import _log
from .._errors import KernelFeatureError, PrivilegeError, SysCallError, UsageError
from .._values import Record

__all__ = [
    "TRACEFS_MOUNTS",
    "Tracefs",
    "UprobeDefinition",
    "find_tracefs",
    "kernel_error",
    "parse_definition",
    "parse_definitions",
]

# kernel/trace/trace_uprobe.c, trace_uprobe_show(): "%c:%s/%s %s:0x%0*lx" then "(0x%lx)" for a
# reference counter, then " name=fetcharg" for each argument.
_HEAD = re.compile(r"[pr]:([^/\s]+)/(\S+)\s")
_DEFINITION = re.compile(
    r"(?P<kind>[pr]):(?P<group>[^/\s]+)/(?P<event>\S+)\s+"
    r"(?P<path>\S+):0x(?P<offset>[0-9a-fA-F]+)(?:\(0x(?P<ref>[0-9a-fA-F]+)\))?"
    r"(?:\s+(?P<args>.*))?$"
)


class UprobeDefinition(Record):
    """One line of ``uprobe_events``.

    Attributes:
        retprobe: An ``r:`` (uretprobe) definition.
        group: The event's group (``rawprobe_4242_…``, ``probe_main`` for perf probe).
        event: The event's name in its group.
        path: The probed file, as the definition names it.
        file_offset: Offset of the probed instruction in the file.
        ref_ctr_offset: A semaphore's file offset, or 0.
        args: The fetch-args as the kernel shows them.
    """

    __slots__ = ("args", "event", "file_offset", "group", "path", "ref_ctr_offset", "retprobe")

    retprobe: bool
    group: str
    event: str
    path: str
    file_offset: int
    ref_ctr_offset: int
    args: str

    def __init__(self, retprobe: bool, group: str, event: str, path: str, file_offset: int,
                 ref_ctr_offset: int, args: str) -> None:
        for name, value in (("retprobe", retprobe), ("group", group), ("event", event),
                            ("path", path), ("file_offset", file_offset),
                            ("ref_ctr_offset", ref_ctr_offset), ("args", args)):
            object.__setattr__(self, name, value)


def parse_definition(line: str) -> UprobeDefinition | None:
    """Parse one line of ``uprobe_events`` (or a uprobe line of ``dynamic_events``).

    Returns:
        The definition, or ``None`` for a line that is not a uprobe (a kprobe or an eprobe of
        ``dynamic_events``, a blank line).
    """
    match = _DEFINITION.match(line.strip())
    if not match:
        return None
    return UprobeDefinition(
        retprobe=match.group("kind") == "r",
        group=match.group("group"),
        event=match.group("event"),
        path=match.group("path"),
        file_offset=int(match.group("offset"), 16),
        ref_ctr_offset=int(match.group("ref") or "0", 16),
        args=match.group("args") or "",
    )


def parse_definitions(text: str) -> list[UprobeDefinition]:
    """Every uprobe definition in the text of ``uprobe_events`` or ``dynamic_events``."""
    return [d for d in map(parse_definition, text.splitlines()) if d is not None]


def kernel_error(error_log: str, command: str) -> str | None:
    """The kernel's explanation of why ``command`` was refused, from ``error_log`` text.

    Each entry is three lines (kernel/trace/trace.c, tracing_log_err()): ``[time] subsystem:
    error: TEXT``, ``  Command: COMMAND`` and a caret line. The newest entry for ``command`` wins
    (other tools may write to the same log).

    Returns:
        ``TEXT``, then the command and the caret, or ``None`` when the log has no entry for it.
    """
    lines = error_log.splitlines()
    found: str | None = None
    for index, line in enumerate(lines):
        if line.strip() != f"Command: {command.strip()}" or index == 0:
            continue
        head = lines[index - 1]
        text = head.split("error:", 1)[1].strip() if "error:" in head else head.strip()
        caret = lines[index + 1] if index + 1 < len(lines) else ""
        found = f"{text}\n{line}\n{caret}".rstrip()
    return found


# Where tracefs is mounted: its own mount point (Linux 4.1+), or inside debugfs on older set-ups.
TRACEFS_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def find_tracefs() -> str:
    """Where tracefs is mounted (the directory holding ``uprobe_events``).

    Raises:
        PrivilegeError: It is mounted, but this process may not look inside (tracefs is
            mounted mode 0700 by default: root only).
        KernelFeatureError: Not mounted, or the kernel lacks CONFIG_UPROBE_EVENTS (the message
            says how to mount it).
    """
    for root in TRACEFS_MOUNTS:
        try:
            os.stat(os.path.join(root, "uprobe_events"))
            return root
        except PermissionError:
            # Only a mounted tracefs refuses: the empty directory sysfs keeps for the mount
            # point is open to everyone.
            try:
                mode = f" (mode {stat.S_IMODE(os.stat(root).st_mode):04o})"
            except OSError:
                mode = ""
            raise PrivilegeError(
                f"tracefs is mounted at {root}{mode}, but this user may not read it: run "
                "rawprobe as root", capability="CAP_DAC_OVERRIDE") from None
        except OSError:
            continue
    if os.path.isdir(TRACEFS_MOUNTS[0]) and os.path.exists(
        os.path.join(TRACEFS_MOUNTS[0], "events")
    ):
        raise KernelFeatureError(
            "tracefs has no uprobe_events: the kernel was built without CONFIG_UPROBE_EVENTS; "
            "use --backend bpf"
        )
    raise KernelFeatureError(
        "tracefs is not mounted: mount it with 'mount -t tracefs nodev /sys/kernel/tracing' "
        "(or use --backend bpf)"
    )


class Tracefs:
    """The tracefs files of one mount.

    Args:
        root: The mount point (default: found with :func:`find_tracefs`).
    """

    def __init__(self, root: str | None = None) -> None:
        self.root = root or find_tracefs()
        # uprobe_events stays open once written: removing definitions must not need a new
        # descriptor (a run that failed for lack of descriptors still cleans up). The list
        # is the one place it is kept: the finalizer closes it and forgets it, so a write
        # after that (another finalizer's, at interpreter exit) opens it again instead of
        # writing to whatever reuses the number.
        self._events_fd: list[int | None] = [None]
        self._finalizer = weakref.finalize(self, _close_fd, self._events_fd)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _write(self, file: str, line: str) -> None:
        if file == "uprobe_events":
            events_fd = self._events_fd[0]
            if events_fd is None:
                events_fd = self._events_fd[0] = os.open(
                    self.path(file), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.write(events_fd, line.encode() + b"\n")
            return
        fd = os.open(self.path(file), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close what this object keeps open (idempotent; it opens again if used)."""
        _close_fd(self._events_fd)

    def define(self, line: str) -> None:
        """Add one definition to ``uprobe_events``.

        Raises:
            PrivilegeError: Not allowed to write tracefs.
            UsageError: The kernel refused the definition (its explanation is in the message).
            SysCallError: Any other failure.
        """
        try:
            self._write("uprobe_events", line)
            _log.info("uprobe_events: %s", line)
        except PermissionError:
            raise PrivilegeError(
                f"not allowed to write {self.path('uprobe_events')}: the tracefs backend needs "
                "root", capability="CAP_SYS_ADMIN"
            ) from None
        except OSError as error:
            reason = None
            try:
                with open(self.path("error_log")) as log:
                    reason = kernel_error(log.read(), line)
            except OSError:
                pass
            code = error.errno or 0
            if code in (errno.EINVAL, errno.E2BIG, errno.ENOENT, errno.EEXIST, errno.EBUSY):
                detail = reason or os.strerror(code)
                raise UsageError(
                    f"the kernel refused the uprobe_events definition: {detail}\n"
                    "(the tracefs backend writes probes in the kernel's own syntax; "
                    "--backend bpf may accept this probe)"
                ) from None
            raise SysCallError(code, f"write {self.path('uprobe_events')}") from None

    def define_many(self, lines: Sequence[str]) -> None:
        """Add definitions to ``uprobe_events`` in one write (the kernel parses every line of
        a write; one write per definition costs a system call each).

        Raises:
            PrivilegeError, UsageError, SysCallError: As :meth:`define`; the definitions
                before the refused one are in place (remove the group to undo them).
        """
        if not lines:
            return
        try:
            self._write("uprobe_events", "\n".join(lines))
            if _log.enabled(_log.INFO):
                for line in lines:
                    _log.info("uprobe_events: %s", line)
        except OSError:
            # Which one was refused, and why: the kernel stopped at it; replay the rest one
            # by one for the message (those already defined are refused as duplicates).
            defined = {(d.group, d.event) for d in self.definitions()}
            for line in lines:
                match = _HEAD.match(line)
                if match and (match.group(1), match.group(2)) in defined:
                    continue
                self.define(line)
            raise

    def remove_group(self, group: str, *, attempts: int = 20) -> bool:
        """Remove every definition of ``group`` in one write (``-:GROUP/``: an empty event
        name matches them all, kernel/trace/trace_uprobe.c, trace_uprobe_match()).

        Returns:
            ``True`` if it was removed, ``False`` if the group had no definition.

        Raises:
            SysCallError: The kernel refused (``EBUSY``: an event of it is still open).
        """
        return self.remove(group, "", attempts=attempts)

    def remove(self, group: str, event: str, *, attempts: int = 20) -> bool:
        """Remove ``GROUP/EVENT`` from ``uprobe_events``.

        A definition still in use (a perf event being released) is busy for a moment; this
        retries for about a second.

        Returns:
            ``True`` if it was removed, ``False`` if it did not exist.

        Raises:
            SysCallError: The kernel refused (``EBUSY``: someone still has the event open).
        """
        for attempt in range(attempts):
            try:
                self._write("uprobe_events", f"-:{group}/{event}")
                return True
            except FileNotFoundError:
                return False
            except OSError as error:
                if error.errno != errno.EBUSY or attempt == attempts - 1:
                    raise SysCallError(error.errno or 0, f"remove uprobe {group}/{event}") from None
                time.sleep(0.05)
        return False  # pragma: no cover - the loop returns or raises

    def event_id(self, group: str, event: str) -> int:
        """The event's type number (``perf_event_attr.config`` for PERF_TYPE_TRACEPOINT)."""
        with open(self.path("events", group, event, "id")) as file:
            return int(file.read())

    def event_format(self, group: str, event: str) -> str:
        """The text of the event's ``format`` file."""
        with open(self.path("events", group, event, "format")) as file:
            return file.read()

    def definitions(self) -> list[UprobeDefinition]:
        """Every uprobe defined through tracefs (``uprobe_events``)."""
        with open(self.path("uprobe_events")) as file:
            return parse_definitions(file.read())


def _close_fd(holder: list[int | None]) -> None:
    fd, holder[0] = holder[0], None
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
