"""Whose uprobe_events definitions are whose: the groups rawprobe's tracefs runs create.

A run defines its probes in a group of its own, ``rawprobe_<pidns>_<pid>_<start>_<n>``: the
inode of its PID namespace, its pid and start time in that namespace, and a sequence number
within the process. ``rawprobe probes --clean`` removes only the groups of runs that are
provably gone, and a pid cannot prove that on its own: the same number names another process in
another PID namespace (a run in a container looks "gone" from the host). The namespace's inode
is something a namespace cannot fake, and the host sees every namespace's processes with their
pid in each (``NSpid:`` in ``/proc/PID/status``). So a group is stale when its namespace is this
one and no process of that pid started at that time lives; or its namespace has no process
left; or no process of that namespace has that pid there. Anything this process cannot see (it
runs in a child namespace itself) is never called stale.
"""

from __future__ import annotations

import itertools
import os
import re

__all__ = [
    "GROUP_PREFIX",
    "GroupOwner",
    "new_group",
    "owner_alive",
    "parse_group",
    "process_start_time",
]

GROUP_PREFIX = "rawprobe_"
_GROUP = re.compile(r"rawprobe_(?:(\d+)_)?(\d+)_(\d+)_(\d+)")
_SEQUENCE = itertools.count()


class GroupOwner(tuple):  # type: ignore[type-arg]
    """``(pid_namespace, pid, start)`` of the run that created a group; ``pid_namespace`` is
    None for groups of rawprobe before 0.1 (no namespace in the name)."""

    __slots__ = ()

    def __new__(cls, pid_namespace: int | None, pid: int, start: int) -> GroupOwner:
        return tuple.__new__(cls, (pid_namespace, pid, start))

    @property
    def pid_namespace(self) -> int | None:
        return self[0]  # type: ignore[no-any-return]

    @property
    def pid(self) -> int:
        return int(self[1])

    @property
    def start(self) -> int:
        return int(self[2])


def process_start_time(pid: int, proc: str = "/proc") -> int | None:
    """A process's start time in clock ticks since boot (field 22 of ``/proc/PID/stat``).

    Returns:
        The start time, or ``None`` if there is no such process.
    """
    try:
        with open(f"{proc}/{pid}/stat") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _pid_namespace(pid: int | str = "self") -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def new_group() -> str:
    """A group name for a run of this process, unique on the host."""
    pid = os.getpid()
    return (f"{GROUP_PREFIX}{_pid_namespace() or 0}_{pid}_{process_start_time(pid) or 0}_"
            f"{next(_SEQUENCE)}")


def parse_group(group: str) -> GroupOwner | None:
    """The owner of a group rawprobe's tracefs backend created, else ``None``."""
    match = _GROUP.fullmatch(group)
    if not match:
        return None
    namespace = None if match.group(1) is None else int(match.group(1))
    return GroupOwner(namespace, int(match.group(2)), int(match.group(3)))


def _nspid(pid: str) -> list[int]:
    """The pid of ``pid`` in each of its PID namespaces, outermost first (``NSpid:``)."""
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("NSpid:"):
                    return [int(field) for field in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def owner_alive(owner: GroupOwner) -> tuple[bool | None, int | None]:
    """Whether the run that created a group still lives, and its pid as this process sees it.

    Returns:
        ``(True, pid)`` alive; ``(False, None)`` provably gone; ``(None, None)`` when this
        process cannot tell (its own PID namespace hides the owner's).
    """
    ours = _pid_namespace()
    if owner.pid_namespace is None or owner.pid_namespace == ours:
        alive = process_start_time(owner.pid) == owner.start
        return alive, owner.pid if alive else None
    if len(_nspid("self")) != 1:
        return None, None  # in a child namespace: other namespaces' processes are not all seen
    # Another namespace, seen from the initial one. Start times are not compared: a time
    # namespace shifts what its processes read as boot time.
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or _pid_namespace(entry) != owner.pid_namespace:
            continue
        if _nspid(entry)[-1:] == [owner.pid]:
            return True, int(entry)
    return False, None  # no process of that pid there, or no process left in it
