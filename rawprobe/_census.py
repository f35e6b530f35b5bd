"""Every uprobe active on the host, whoever planted it, and the leftovers of killed rawprobes.

The kernel keeps no single list of uprobes (kernel/events/uprobes.c keeps them in an rbtree
no interface shows), so ``rawprobe probes`` gathers them from where their owners leave traces:

- ``tracefs``: definitions in ``uprobe_events`` (perf probe, rawprobe's tracefs backend, bcc on
  old set-ups). The kernel records no owner; rawprobe's own groups carry their process
  (``rawprobe_<pid>_<start>_<n>``) and bcc names events ``..._bcc_<pid>``.
- ``bpf-perf``: BPF links of type perf_event whose event is a uprobe, found with
  ``BPF_LINK_GET_NEXT_ID``; Linux 6.6+ reports the file, offset and cookie
  (``bpf_link_info.perf_event.uprobe``). rawprobe's BPF backend and libbpf-based tools.
- ``bpf-multi``: uprobe_multi links (Linux 6.6+), one row per offset (newer bpftrace).
- ``perf``: perf event descriptors with a BPF program attached directly
  (``PERF_EVENT_IOC_SET_BPF``, no link: bcc, bpftrace before 0.19), found in ``/proc/*/fd``
  and described by ``BPF_TASK_FD_QUERY``.

Owners come from ``/proc/*/fd``: a link descriptor (``anon_inode:bpf_link``) names its link in
its fdinfo (``link_id:``). Perf events without any BPF program (a tracefs event opened by perf
or by rawprobe's tracefs backend) reveal nothing through procfs; their definitions are listed.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._errors import RawprobeError, SysCallError
from ._sys import bpf
from ._tracefs import Tracefs, UprobeDefinition, owner_alive, parse_group

__all__ = [
    "ActiveProbe",
    "CleanReport",
    "Descriptors",
    "Inventory",
    "clean_stale",
    "list_probes",
    "parse_fdinfo",
    "scan_descriptors",
    "symbol_at",
]

_BCC_EVENT = re.compile(r"_bcc_(\d+)$")
_ENOTSUPP = 524  # the kernel's own "not supported" (include/linux/errno.h), not in userspace


@dataclass(frozen=True)
class ActiveProbe:
    """One uprobe as ``rawprobe probes`` shows it.

    Attributes:
        kind: ``tracefs``, ``bpf-perf``, ``bpf-multi`` or ``perf``.
        path: The probed file.
        file_offset: Where in it.
        retprobe: A return probe.
        symbol: The function containing the offset (``name`` or ``name+0x10``), if known.
        pid: The owning process, if known.
        comm: Its command name.
        group: tracefs: the event's group.
        event: tracefs: the event's name.
        link_id: BPF: the link's id.
        prog_id: BPF: the program's id.
        prog_name: BPF: the program's name.
        cookie: BPF: the attachment's cookie (Linux 6.9+ reports it for perf-event links).
        ref_ctr_offset: A USDT semaphore's file offset, or 0.
        stale: tracefs: a rawprobe group whose process is gone (``probes --clean`` removes it).
    """

    kind: str
    path: str
    file_offset: int
    retprobe: bool
    symbol: str | None = None
    pid: int | None = None
    comm: str | None = None
    group: str | None = None
    event: str | None = None
    link_id: int | None = None
    prog_id: int | None = None
    prog_name: str | None = None
    cookie: int | None = None
    ref_ctr_offset: int = 0
    stale: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Inventory:
    """The probes found, and what could not be looked at (each a sentence for the user).

    Attributes:
        probes: The probes found.
        warnings: Everything worth telling: each place not looked at, each probe not
            described.
        unread: The places not looked at (also in ``warnings``): when there are any, the
            probes are not all there are, and "none" is no answer.
    """

    probes: list[ActiveProbe]
    warnings: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def parse_fdinfo(text: str) -> dict[str, str]:
    """``key: value`` lines of ``/proc/PID/fdinfo/FD`` (the first value of repeated keys)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in result:
            result[key.strip()] = value.strip()
    return result


def _comm(pid: int, proc: str = "/proc") -> str | None:
    try:
        with open(f"{proc}/{pid}/comm") as file:
            return file.read().strip()
    except OSError:
        return None


@dataclass
class Descriptors:
    """What ``/proc/*/fd`` shows about BPF links and perf events.

    Attributes:
        link_owners: Link id to the processes holding a descriptor for it, lowest pid first.
        perf_events: ``(pid, fd)`` of every perf event descriptor.
        comms: Command names of the processes seen.
    """

    link_owners: dict[int, list[int]] = field(default_factory=dict)
    perf_events: list[tuple[int, int]] = field(default_factory=list)
    comms: dict[int, str] = field(default_factory=dict)
    hidden: int = 0  # processes whose descriptors this process may not read


def scan_descriptors(proc: str = "/proc") -> Descriptors:
    """Look at every process's descriptors for BPF links and perf events."""
    found = Descriptors()
    try:
        pids = sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            found.hidden += 1  # not ours to look at
            continue
        except OSError:
            continue  # gone
        for name in fds:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target == "anon_inode:bpf_link":
                try:
                    with open(f"{proc}/{pid}/fdinfo/{name}") as file:
                        link_id = parse_fdinfo(file.read()).get("link_id")
                except OSError:
                    continue
                if link_id is not None and link_id.isdigit():
                    owners = found.link_owners.setdefault(int(link_id), [])
                    if pid not in owners:
                        owners.append(pid)
            elif target == "anon_inode:[perf_event]":
                found.perf_events.append((pid, int(name)))
            else:
                continue
            if pid not in found.comms:
                found.comms[pid] = _comm(pid, proc) or "?"
    return found


def symbol_at(path: str, file_offset: int) -> str | None:
    """The function of ``path`` containing ``file_offset``: ``name`` or ``name+0x10``.

    Returns:
        ``None`` when the file cannot be read or no function contains the offset.
    """
    from ._symbols import function_at

    # The path is what the prober named back then; opening something that is no longer a
    # regular file (a FIFO) could block.
    if not os.path.isfile(path):
        return None
    try:
        found = function_at(path, file_offset)
    except (RawprobeError, OSError, ValueError):
        return None
    return None if found is None else found.describe()


_FD_PATH = re.compile(r"/proc/self/fd/(\d+)")


def _real_path(path: str, pid: int | None) -> str:
    """The file a probe was planted in. rawprobe hands the kernel ``/proc/self/fd/N`` (the file
    it opened and resolved, whatever its name meanwhile), which the kernel keeps as the
    probe's path: read what that descriptor of the owner names while the owner lives."""
    match = _FD_PATH.fullmatch(path)
    if match is None or pid is None:
        return path
    try:
        return os.readlink(f"/proc/{pid}/fd/{match.group(1)}")
    except OSError:
        return path


def _tracefs_probes(definitions: Iterable[UprobeDefinition],
                    comms: dict[int, str]) -> list[ActiveProbe]:
    result = []
    for d in definitions:
        pid: int | None = None
        stale = False
        owner = parse_group(d.group)
        if owner is not None:
            alive, pid = owner_alive(owner)
            stale = alive is False
        else:
            bcc = _BCC_EVENT.search(d.event)
            if bcc and os.path.exists(f"/proc/{bcc.group(1)}"):
                pid = int(bcc.group(1))
        comm = None if pid is None else comms.get(pid) or _comm(pid)
        result.append(ActiveProbe("tracefs", _real_path(d.path, pid), d.file_offset, d.retprobe,
                                  pid=pid,
                                  comm=comm, group=d.group, event=d.event,
                                  ref_ctr_offset=d.ref_ctr_offset, stale=stale))
    return result


def _program_name(prog_id: int) -> str | None:
    try:
        fd = bpf.open_prog(prog_id)
    except SysCallError:
        return None
    try:
        return bpf.prog_name(fd)
    except SysCallError:
        return None
    finally:
        os.close(fd)


def list_probes(*, tracefs: Tracefs | None = None, resolve_symbols: bool = True) -> Inventory:
    """Every uprobe active on the host (see the module docstring for where each kind comes
    from).

    Args:
        tracefs: The tracefs mount to read (default: found); unreadable means a warning.
        resolve_symbols: Name the function around each offset (reads the files' symbols).
    """
    unread: list[str] = []
    descriptors = scan_descriptors()
    comms = descriptors.comms
    probes: list[ActiveProbe] = []

    try:
        fs = tracefs or Tracefs()
        definitions = fs.definitions()
    except (RawprobeError, OSError) as error:
        unread.append(f"tracefs uprobes not listed: {error}")
        definitions = []
    probes.extend(_tracefs_probes(definitions, comms))

    # BPF links.
    linked: set[tuple[int | None, int, int, bool]] = set()  # (owner, prog, offset, ret)
    unresolved: dict[int, tuple[int, int | None]] = {}  # prog id -> (link id, owner)
    try:
        link_ids = list(bpf.link_ids())
    except SysCallError as error:
        unread.append(f"BPF links not listed: {error} (needs root or CAP_SYS_ADMIN)")
        link_ids = []
    if descriptors.hidden:
        unread.append(f"the descriptors of {descriptors.hidden} processes not read (their "
                      "perf events, and who holds which BPF link): run as root")
    warnings: list[str] = list(unread)
    names: dict[int, str | None] = {}
    for link_id in link_ids:
        try:
            fd = bpf.open_link(link_id)
        except SysCallError:
            continue  # detached meanwhile
        try:
            info = bpf.link_info(fd)
        except SysCallError:
            continue
        finally:
            os.close(fd)
        owners = descriptors.link_owners.get(link_id, [])
        owner = owners[0] if owners else None
        if info.type == bpf.BPF_LINK_TYPE_PERF_EVENT and not info.uprobes:
            unresolved[info.prog_id] = (link_id, owner)  # before 6.6, or not a uprobe
            continue
        if not info.uprobes:
            continue
        kind = "bpf-multi" if info.type == bpf.BPF_LINK_TYPE_UPROBE_MULTI else "bpf-perf"
        if info.prog_id not in names:
            names[info.prog_id] = _program_name(info.prog_id)
        for path, offset, retprobe, cookie, ref_ctr in info.uprobes:
            linked.add((owner, info.prog_id, offset, retprobe))
            probes.append(ActiveProbe(
                kind, _real_path(path, owner), offset, retprobe, pid=owner,
                comm=None if owner is None else comms.get(owner), link_id=link_id,
                prog_id=info.prog_id, prog_name=names[info.prog_id], cookie=cookie,
                ref_ctr_offset=ref_ctr,
            ))

    # Perf events with a program attached; the ones a link already showed are skipped.
    for pid, fd in descriptors.perf_events:
        try:
            query = bpf.task_fd_query(pid, fd)
        except SysCallError as error:
            # ENOENT: no program attached (a plain perf event); EBADF/ESRCH: gone meanwhile.
            if error.errno not in (errno.ENOENT, errno.EBADF, errno.ESRCH, _ENOTSUPP):
                warnings.append(f"perf event {fd} of process {pid} not described: {error}")
            continue
        if query.fd_type not in (bpf.BPF_FD_TYPE_UPROBE, bpf.BPF_FD_TYPE_URETPROBE):
            continue
        retprobe = query.fd_type == bpf.BPF_FD_TYPE_URETPROBE
        if (pid, query.prog_id, query.probe_offset, retprobe) in linked:
            continue
        if query.prog_id not in names:
            names[query.prog_id] = _program_name(query.prog_id)
        link = unresolved.get(query.prog_id)
        probes.append(ActiveProbe(
            "bpf-perf" if link is not None else "perf", _real_path(query.name, pid),
            query.probe_offset,
            retprobe, pid=pid, comm=comms.get(pid),
            link_id=link[0] if link is not None else None, prog_id=query.prog_id,
            prog_name=names[query.prog_id],
        ))

    if resolve_symbols:
        probes = [_with_symbol(p) for p in probes]
    return Inventory(probes, warnings, unread)


def _with_symbol(probe: ActiveProbe) -> ActiveProbe:
    from dataclasses import replace

    return replace(probe, symbol=symbol_at(probe.path, probe.file_offset))


@dataclass(frozen=True)
class CleanReport:
    """What ``probes --clean`` did.

    Attributes:
        removed: ``(group, event)`` removed: their rawprobe process is gone.
        kept: ``(group, event, pid)`` left alone: their process still runs.
        failed: ``(group, event, reason)`` that could not be removed.
    """

    removed: list[tuple[str, str]]
    kept: list[tuple[str, str, int]]
    failed: list[tuple[str, str, str]]


def clean_stale(tracefs: Tracefs | None = None) -> CleanReport:
    """Remove the uprobe_events definitions of rawprobe runs whose process is gone.

    Only groups whose run is provably gone are touched (see :mod:`rawprobe._host.tracefs_groups`:
    a run in another PID namespace is not taken for a dead one); a group whose owner cannot
    be told from here is kept, with pid ``-1``.

    Raises:
        KernelFeatureError: tracefs is not mounted.
    """
    fs = tracefs or Tracefs()
    removed: list[tuple[str, str]] = []
    kept: list[tuple[str, str, int]] = []
    failed: list[tuple[str, str, str]] = []
    for d in fs.definitions():
        owner = parse_group(d.group)
        if owner is None:
            continue
        alive, pid = owner_alive(owner)
        if alive is not False:
            kept.append((d.group, d.event, -1 if pid is None else pid))
            continue
        try:
            if fs.remove(d.group, d.event, attempts=1):
                removed.append((d.group, d.event))
        except SysCallError as error:
            failed.append((d.group, d.event, str(error)))
    return CleanReport(removed, kept, failed)
