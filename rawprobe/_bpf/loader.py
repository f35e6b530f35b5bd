"""Loading rawprobe's BPF object, possibly ahead of time.

:class:`LoadSpec` says everything a load depends on: which programs, how big each map is, the
read-only settings. :func:`load_object` loads to a spec. Loading takes ~10 ms of kernel and
libbpf work (parsing the kernel's BTF, creating the maps, verifying the programs) that needs
the run's plan only for its spec, and the plan is known only after the command line's imports.
So the command line may :func:`preload` an object for the spec it expects, in a thread, while
it imports and plans: a session whose spec the preloaded object satisfies takes it
(:func:`take`), any other loads its own (and the preloaded one is closed).
"""

from __future__ import annotations

import _thread
import os
import struct

from .._values import Record

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from .._sys.bpfobject import BpfObject

# Imported where they are used: the command line imports this module to start a preload, in
# its first milliseconds; ctypes and libbpf are the preload thread's to import.

__all__ = ["ALL_PROGRAMS", "FOLLOW_PROGRAMS", "KERNEL_PROGRAMS", "SHRINKABLE", "LoadSpec",
           "expected_spec", "load_object", "preload", "settings", "take"]

FOLLOW_PROGRAMS = ("rp_fork", "rp_exec", "rp_exit")
KERNEL_PROGRAMS = ("rp_sys_enter", "rp_sys_exit", "rp_tracepoint")  # clang/kernel.bpf.c
ALL_PROGRAMS = (
    *FOLLOW_PROGRAMS,
    "rp_empty",
    *(f"rp_{kind}{multi}{sleepable}" for kind in ("entry", "return")
      for multi in ("", "_multi") for sleepable in ("", "_sleepable")),
    *KERNEL_PROGRAMS,
)
# Maps a run may not touch (each then gets one entry): per-CPU cells and stack slots cost more
# to create at full size than loading the programs.
SHRINKABLE = ("aggregates", "spans", "stacks", "stack_pids", "followed", "syscalls",
              "sys_totals", "sys_totals_by_pid")


class LoadSpec(Record):
    """What loading the object depends on.

    Attributes:
        programs: The programs to load.
        probes: Entries of the ``probes`` map (configurations).
        stats: Entries of the ``stats`` map (event ids).
        ring_size: Bytes of the ring buffer.
        shrunk: Maps the run never touches, created with one entry.
        settings: ``struct rp_settings`` bytes.
    """

    __slots__ = ("probes", "programs", "ring_size", "settings", "shrunk", "stats")

    programs: frozenset[str]
    probes: int
    stats: int
    ring_size: int
    shrunk: frozenset[str]
    settings: bytes

    def __init__(self, programs: Iterable[str], probes: int, stats: int, ring_size: int,
                 shrunk: Iterable[str], settings: bytes) -> None:
        object.__setattr__(self, "programs", frozenset(programs))
        object.__setattr__(self, "probes", max(1, probes))
        object.__setattr__(self, "stats", max(1, stats))
        object.__setattr__(self, "ring_size", ring_size)
        object.__setattr__(self, "shrunk", frozenset(shrunk))
        object.__setattr__(self, "settings", settings)

    def satisfies(self, wanted: LoadSpec) -> bool:
        """Whether an object loaded to this spec serves a run that wants ``wanted``."""
        return (self.programs >= wanted.programs and self.probes >= wanted.probes
                and self.stats >= wanted.stats and self.ring_size == wanted.ring_size
                and self.shrunk == wanted.shrunk and self.settings == wanted.settings)


def load_object(spec: LoadSpec | Callable[[], LoadSpec],
                loading: Callable[[], object] | None = None) -> BpfObject:
    """Open rawprobe's object, size its maps, set its settings, and load the programs (to
    ``spec``, or to what ``spec()`` gives once the object is open); ``loading()`` is called
    as the load itself (libbpf's and the kernel's work) begins.

    Raises:
        PrivilegeError, BpfObjectError: As :meth:`BpfObject.load`.
    """
    from .._plan import abi
    from .._sys.bpf import BPF_TRACE_UPROBE_MULTI
    from .._sys.bpfobject import BpfObject, object_bytes

    obj = BpfObject(object_bytes())
    try:
        if not isinstance(spec, LoadSpec):
            spec = spec()
        cpus = int(obj.lib.num_possible_cpus())
        obj.map("probes").set_max_entries(spec.probes)
        obj.map("stats").set_max_entries(spec.stats)
        obj.map("scratch").set_max_entries(cpus * abi.MAX_NEST)
        obj.map("events").set_max_entries(spec.ring_size)
        # Maps the run never touches get one entry: creating them at full size (16,384
        # preallocated per-CPU cells, 16 MiB of stack slots) costs more than loading the
        # programs.
        for name in spec.shrunk:
            obj.map(name).set_max_entries(1)
        # const volatile struct rp_settings is the object's only read-only global; what the
        # run does not use, the verifier leaves out.
        obj.set_rodata(spec.settings)
        for name in ALL_PROGRAMS:
            program = obj.program(name)
            obj.lib.program_set_autoload(program, name in spec.programs)
            if "_multi" in name:
                obj.lib.program_set_expected_attach_type(program, BPF_TRACE_UPROBE_MULTI)
        if loading is not None:
            loading()
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


# The one object loaded ahead of time in this process: a lock held until its load ends, and
# [its spec, the object] (None, None when the load failed).
_pending: tuple[_thread.LockType, list[Any]] | None = None


def preload(spec: Callable[[], LoadSpec], head_start: float = 0.1) -> None:
    """Start loading an object, for the spec ``spec()`` makes, in a thread (the command line
    does, before its imports and planning). A failure is not reported: the session then
    loads its own, and meets the error itself.

    Returns once the thread's own Python (its imports, opening the object) is done and the
    load proper has begun, or after ``head_start`` seconds. Both threads need the interpreter
    lock, and a thread waiting for it gets it only at the switch interval (5 ms): run side by
    side, the thread's few milliseconds of Python took it three times as long to reach the
    load, the path to the first event. The load (BTF, maps, the verifier: C, without the
    lock) then runs beside the caller's imports.
    """
    global _pending
    if _pending is not None:
        return
    lock = _thread.allocate_lock()
    lock.acquire()
    started = _thread.allocate_lock()
    started.acquire()
    slot: list[Any] = [None, None]
    begun: list[bool] = []

    def begin() -> None:
        begun.append(True)
        started.release()

    def work() -> None:
        try:
            from .._sys.libbpf import libbpf

            def made() -> LoadSpec:
                slot[0] = spec()
                return slot[0]  # type: ignore[no-any-return]

            with libbpf().silenced():
                slot[1] = load_object(made, begin)
        except BaseException:  # the session's own load meets the error and reports it
            slot[1] = None
        finally:
            if not begun:
                started.release()  # failed before its load began: the caller waits no more
            lock.release()

    _pending = (lock, slot)
    _thread.start_new_thread(work, ())
    started.acquire(timeout=head_start)


def take(wanted: LoadSpec) -> BpfObject | None:
    """The preloaded object when it serves ``wanted`` (waiting for its load to end), else
    None; either way nothing stays preloaded."""
    global _pending
    if _pending is None:
        return None
    lock, slot = _pending
    _pending = None
    with lock:
        spec, obj = slot
    if obj is None:
        return None
    if spec.satisfies(wanted):
        return obj  # type: ignore[no-any-return]
    obj.close()
    return None


def expected_spec(words: Sequence[str], *, ring_size: int, filters: bool) -> LoadSpec:
    """The spec a plain streaming run of probe ``words`` (``attach PROBE ...``: no
    aggregation, no command) most likely wants, guessed from the words' text: the entry
    program for ``p:`` words and the return program for ``r:`` ones, sleepable when the word
    reads memory (a dereference or a string) and the kernel has them, for uprobe_multi links
    where the kernel has them, for up to 64 probes. A wrong guess costs only the thread's work.
    """
    from .._sys.features import UPROBE_MULTI

    multi = "_multi" if UPROBE_MULTI.available() else ""
    programs = set()
    for word in words or ("p:",):
        kind = "return" if word.lstrip().startswith(("r:", "r ")) or "%return" in word \
            else "entry"
        reads = "(" in word or ":str" in word or ":ustr" in word
        programs.add(f"rp_{kind}{multi}{'_sleepable' if reads else ''}")
    return LoadSpec(programs, 64, 64, ring_size, SHRINKABLE,
                    settings(follow=False, filters=filters, aggregates=False))


def settings(*, follow: bool, filters: bool, aggregates: bool) -> bytes:
    """``struct rp_settings`` for a run of this process."""
    from .._plan import abi

    return struct.pack(abi.SETTINGS_FORMAT, int(follow), os.getpid(), int(filters),
                       int(aggregates))
