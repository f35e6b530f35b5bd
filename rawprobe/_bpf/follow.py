"""Following a command and its children with uprobes of their own (``attach -- COMMAND``).

A uprobe planted host-wide puts a breakpoint in every process that maps the file: a process
the run does not trace, calling the probed function, takes the trap (0.3 to 5 µs a call) only
for the BPF program to drop the hit. So a command is followed with per-process uprobes, the
way perf does it: each probe is a tracefs uprobe event (``uprobe_events``) opened as perf
events on the command, and the kernel installs the breakpoint only where one of those events
wants it (kernel/trace/trace_uprobe.c, uprobe_perf_filter()).

- A *carrier* event per probe, on the command with ``inherit``: each process and thread the
  command (or any of its children) starts gets a copy of it in the kernel before it first
  runs (perf_event_init_task()), so its breakpoints are in place from its first instruction.
  A carrier has no BPF program: an inherited event's copies share its program, and the first
  child to exit would take it away from all of them (perf_event_free_bpf_prog() removes it
  from the event's program array).
- A *holder* event per probe, on the command without ``inherit``, carries the BPF program
  (with the probe's cookie). The program array belongs to the tracefs event, so it runs for
  every hit that passes the filter: the command's and every carrier copy's. The holder lives
  until rawprobe closes it, whenever the command exits.

The command is stopped at its exec (PTRACE_TRACEME) while this is set up, so nothing
rawprobe's own child does before the exec is traced, and nothing the command does is missed.

Removing a tracefs uprobe event costs a grace period (~50 ms) each, where a uprobe_multi link
removes any number at once: a run with more probes than :data:`MAX_PROBES` follows its
command with host-wide probes and the BPF program's process-tree filter instead, as it does
where tracefs or ptrace cannot be used (:func:`refusal` says why).
"""

from __future__ import annotations

import contextlib
import errno
import os

from .. import _log
from .._errors import KernelFeatureError, PrivilegeError
from .._host.tracefs import Tracefs, find_tracefs
from .._host.tracefs_groups import new_group
from .._sys.libbpf import Libbpf
from .._sys.limits import open_perf_event
from .._sys.perf import FLAG_INHERIT, PERF_TYPE_TRACEPOINT, PerfEventAttr

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._plan.session import PlannedEvent

__all__ = ["MAX_PROBES", "CommandEvents", "refusal"]

MAX_PROBES = 16


def refusal(probes: int) -> str | None:
    """Why a command cannot be followed with uprobes of its own here (None: it can)."""
    if probes > MAX_PROBES:
        return (f"{probes} probes: more than {MAX_PROBES} would each take ~50 ms to remove "
                "this way")
    try:
        root = find_tracefs()
    except (KernelFeatureError, PrivilegeError) as error:  # none, or not this user's to read
        return str(error)
    if not os.access(os.path.join(root, "uprobe_events"), os.W_OK):
        return "uprobe_events is not writable"
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as file:
            if file.read().strip() == "3":
                return "ptrace is disabled (kernel.yama.ptrace_scope = 3)"
    except OSError:
        pass
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("TracerPid:") and line.split()[1] != "0":
                    return "rawprobe is itself being traced (ptrace)"
    except OSError:
        pass
    return None


class CommandEvents:
    """The tracefs uprobe events, carriers and holders that follow one command.

    Args:
        lib: libbpf, to attach the programs.
    """

    def __init__(self, lib: Libbpf) -> None:
        self._lib = lib
        self._tracefs: Tracefs | None = None
        self._group = ""
        self._carriers: list[int] = []
        self.links: list[int] = []  # the holders' libbpf links (they own the holders' fds)

    def attach(self, events: Sequence[PlannedEvent], programs: Sequence[int], pid: int) -> None:
        """Plant every event on process ``pid`` and the processes it starts.

        Args:
            events: The planned events.
            programs: Each event's BPF program (libbpf ``bpf_program`` pointers).
            pid: The command, stopped at its exec.

        Raises:
            UsageError: The kernel refused a definition (its explanation in the message).
            SysCallError: A perf event could not be opened or the program attached.
        """
        tracefs = self._tracefs = Tracefs()
        self._group = new_group()
        names = [f"e{event.event_id}" for event in events]
        tracefs.define_many([
            (f"{'r' if event.retprobe else 'p'}:{self._group}/{name} {event.kernel_path}:"
             f"{event.file_offset:#x}" + (f"({event.ref_ctr_offset:#x})"
                                          if event.ref_ctr_offset else ""))
            for event, name in zip(events, names, strict=True)])
        for event, name, program in zip(events, names, programs, strict=True):
            type_id = tracefs.event_id(self._group, name)
            self._carriers.append(self._open(type_id, pid, inherit=True))
            holder = self._open(type_id, pid, inherit=False)
            try:
                self.links.append(self._lib.attach_perf_event(program, holder, event.cookie))
            except BaseException:
                os.close(holder)
                raise

    @staticmethod
    def _open(type_id: int, pid: int, *, inherit: bool) -> int:
        attr = PerfEventAttr()
        attr.type = PERF_TYPE_TRACEPOINT
        attr.config = type_id
        attr.sample_period = 1  # never sampled: the program returns 0, which ends the hit
        attr.flags = FLAG_INHERIT if inherit else 0
        return open_perf_event(attr, pid, -1, "a uprobe event on the command")

    def close(self) -> None:
        """Remove everything (after the links are destroyed): the carriers, then the group's
        definitions, in one write."""
        carriers, self._carriers = self._carriers, []
        for fd in carriers:
            with contextlib.suppress(OSError):
                os.close(fd)
        tracefs, self._tracefs = self._tracefs, None
        if tracefs is None:
            return
        try:
            tracefs.remove_group(self._group)
        except OSError as error:
            if error.errno != errno.ENOENT:
                _log.warning("removing uprobe events of group %s failed: %s (run 'rawprobe "
                             "probes --clean' once this process has ended)", self._group, error)
        finally:
            tracefs.close()
