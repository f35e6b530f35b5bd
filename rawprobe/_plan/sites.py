"""Where a probe may go. Every site a run probes passes through :func:`check_site`.

The kernel has no blacklist for uprobes: it plants a breakpoint wherever it is asked and runs
the displaced instruction out of line. So before anything is planted, each site is checked
here, once, whatever asked for it: an entry probe, the return probe ``--hist latency`` adds,
each member of a glob, a USDT site from a note, a probe made through the library.

- A return probe in a Go program: the trampoline replaces the return address, and Go's
  runtime, which walks and moves goroutine stacks, crashes the program.
- With ``-p``: a file the processes do not map (another file of that name, in another mount
  namespace), where the probe would never fire.
- x86-64: an offset that is not where an instruction starts (decoded from the start of the
  function holding it, :mod:`.insn`); a USDT site that is not the ``nop`` sys/sdt.h puts there;
  an instruction the kernel refuses (:mod:`.x86_refusals`: a ``lock`` or CS/DS/ES/SS prefix,
  an opcode outside its tables; it says so only once a process maps the file, and a probe
  that will never fire is refused even with ``--force``), or mishandles out of line: AVX-512
  (EVEX, run with the wrong vector registers: the probe corrupts the program; host-wide on
  libc's AVX-512 memset it breaks every process) and AVX (VEX: the kernel skips some, never
  fires on others).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._errors import UsageError
from .._host.files import TargetFile
from .._host.procmaps import read_maps
from .._sys.arch import ARCH
from .._values import Record

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

    from .._probe.fetchargs import UsdtArgument
    from .._probe.words import ProbeSpec

__all__ = ["Site", "check_locations", "check_site", "instruction_hazard", "maps_file",
           "site_warnings", "sites_of"]

# Legacy prefixes that may come before an opcode (Intel SDM vol. 2, 2.1.1).
_LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})
_VEX = (0xC4, 0xC5)
_EVEX = 0x62  # in 64-bit mode always EVEX (BOUND does not exist there)
_NOP = 0x90
_MULTIBYTE_NOP = b"\x0f\x1f"


class Site(Record):
    """One place a probe word resolved to.

    Attributes:
        symbol: The function holding it (None: no known function does).
        file_offset: Where the probe goes, as a file offset.
        symbol_offset: Bytes from the start of ``symbol`` (0: its first instruction).
        function_size: The function's size in bytes (0 when unknown).
        ref_ctr_offset: A USDT semaphore's file offset, or 0.
        usdt_args: A USDT site's arguments (None for a function probe).
        kind: ``func``, ``ifunc`` (the address is a resolver's), ``offset`` (a raw file
            offset) or ``usdt``.
        warning: Something the user should know about this site, or None.
    """

    __slots__ = ("file_offset", "function_size", "kind", "ref_ctr_offset", "symbol",
                 "symbol_offset", "usdt_args", "warning")

    symbol: str | None
    file_offset: int
    symbol_offset: int
    function_size: int
    ref_ctr_offset: int
    usdt_args: tuple[UsdtArgument, ...] | None
    kind: str
    warning: str | None

    def __init__(self, symbol: str | None, file_offset: int, symbol_offset: int = 0,
                 function_size: int = 0, ref_ctr_offset: int = 0,
                 usdt_args: tuple[UsdtArgument, ...] | None = None, kind: str = "func",
                 warning: str | None = None) -> None:
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "file_offset", file_offset)
        object.__setattr__(self, "symbol_offset", symbol_offset)
        object.__setattr__(self, "function_size", function_size)
        object.__setattr__(self, "ref_ctr_offset", ref_ctr_offset)
        object.__setattr__(self, "usdt_args", usdt_args)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "warning", warning)

    @property
    def at_entry(self) -> bool:
        """On a function's first instruction (its frame is not set up yet)."""
        return self.symbol is not None and self.symbol_offset == 0 and self.kind != "usdt"

    def describe(self, path: str) -> str:
        where = f"{path}:{self.file_offset:#x}"
        if self.symbol is None:
            return where
        inside = f"+{self.symbol_offset:#x}" if self.symbol_offset else ""
        return f"{self.symbol}{inside} ({where})"


def check_site(
    target: TargetFile,
    site: Site,
    *,
    retprobe: bool,
    go_evidence: str = "",
    pids: Sequence[int] = (),
    force: bool = False,
) -> str | None:
    """Why a uprobe at ``site`` of ``target`` would harm the program, never fire, or is not
    known to be safe; None when nothing is known against it.

    Args:
        target: The opened file (its bytes are read through it).
        site: The site.
        retprobe: A return probe.
        go_evidence: Why the file is a Go program, or ``""``.
        pids: With ``-p``, the processes traced.
        force: The user takes the risks rawprobe knows of: only what the kernel itself
            refuses (which no option changes) is still reported.

    Returns:
        The reason to refuse (to be shown with the site), or None.
    """
    if ARCH.machine == "x86_64":
        from .x86_refusals import kernel_refuses

        try:
            refused = kernel_refuses(target.read(site.file_offset, 16))
        except ValueError:  # the file ends before the instruction does
            refused = "the file ends in the middle of it"
        if refused is not None:
            return (f"the kernel refuses a uprobe on its instruction ({refused}), so the probe "
                    "would never fire")
    if force:
        return None
    if retprobe and go_evidence:
        return (
            f"{target.path} is a Go program ({go_evidence}): a return probe replaces the "
            "return address on the stack with a trampoline, and Go's runtime, which moves "
            "goroutine stacks and walks them, then finds a return address it does not know "
            "and crashes the program; probe the function's entry instead (or its RET "
            "instructions by offset)"
        )
    if pids and all(maps_file(pid, target) is False for pid in pids):
        return (
            f"{target.path} is not mapped by process {', '.join(map(str, pids))}, so the probe "
            "would never fire there (is it another file of that name, in another mount "
            "namespace? with -p, absolute paths are taken inside the process's root); if the "
            "process loads it later, this is expected"
        )
    if ARCH.machine == "x86_64":
        return _x86_hazard(target, site)
    return _fixed_width_hazard(site, ARCH.instruction_size)


def _x86_hazard(target: TargetFile, site: Site) -> str | None:
    if site.kind == "usdt":
        code = target.read(site.file_offset, 2)
        if not code or (code[0] != _NOP and code[:2] != _MULTIBYTE_NOP):
            return (
                f"its SDT note puts a probe at file offset {site.file_offset:#x}, but no nop "
                "is there (sys/sdt.h marks each probe with one): the note does not describe "
                "this file's code, and a uprobe there could land mid-instruction"
            )
    elif site.symbol is None:
        return (
            f"file offset {site.file_offset:#x} is not inside any known function, so rawprobe "
            "cannot check that an instruction starts there (a uprobe in the middle of one "
            "corrupts the program); use SYMBOL or SYMBOL+OFFSET"
        )
    elif site.symbol_offset:
        boundary = _boundary(target, site)
        if boundary is None:
            return (
                f"its instructions up to +{site.symbol_offset:#x} cannot be decoded, so it is "
                "unknown whether an instruction starts there (a uprobe in the middle of one "
                "corrupts the program)"
            )
        if not boundary:
            return (
                f"+{site.symbol_offset:#x} is in the middle of an instruction of {site.symbol}: "
                "a uprobe there would corrupt the program (see 'objdump -d' for where "
                "instructions start)"
            )
    return instruction_hazard(target.read(site.file_offset, 16))


def _boundary(target: TargetFile, site: Site) -> bool | None:
    from .insn import MAX_INSTRUCTION_LENGTH, boundary_in  # its tables take ms to build

    start = site.file_offset - site.symbol_offset
    size = site.function_size or site.symbol_offset + MAX_INSTRUCTION_LENGTH
    return boundary_in(target.read(start, size), site.symbol_offset)


def instruction_hazard(code: bytes) -> str | None:
    """Why the kernel cannot be trusted with a uprobe on the x86-64 instruction that starts
    ``code``, or None."""
    position = 0
    while position < len(code) and code[position] in _LEGACY_PREFIXES:
        position += 1
    if position >= len(code):
        return None
    opcode = code[position]
    if opcode == _EVEX:
        return (
            "its instruction is an AVX-512 (EVEX) instruction, which the kernel runs out of "
            "line with the wrong vector registers: the probe would corrupt the program. Probe "
            "another instruction (SYMBOL+OFFSET)"
        )
    if opcode in _VEX:
        return (
            "its instruction is an AVX (VEX) instruction, on which the kernel's uprobe does "
            "not fire. Probe another instruction (SYMBOL+OFFSET)"
        )
    return None


def _fixed_width_hazard(site: Site, width: int) -> str | None:
    """Architectures whose instructions all have one width: a site must be aligned to it."""
    if site.symbol is not None and site.symbol_offset % width:
        return (f"+{site.symbol_offset:#x} is not a multiple of {width}, so it is not where an "
                f"instruction of {site.symbol} starts")
    return None


def maps_file(pid: int, target: TargetFile) -> bool | None:
    """Whether process ``pid`` maps ``target`` (compared by device and inode, so a file of the
    same name in another mount namespace does not count); None if unknown. Asked once per
    process and opened file (:attr:`TargetFile.mapped_by`)."""
    if pid in target.mapped_by:
        return target.mapped_by[pid]
    try:
        mappings = read_maps(pid)
    except OSError:
        found = None
    else:
        info = target.info
        device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
        found = any(m.inode == info.st_ino and m.device == device for m in mappings)
    target.mapped_by[pid] = found
    return found


def check_locations(
    path: str,
    locations: Sequence[Any],
    *,
    retprobe: bool = False,
    pids: Sequence[int] = (),
) -> list[str | None]:
    """Attach's verdict on resolved locations: why each would be refused, or None.

    Args:
        path: The file (as :func:`rawprobe.find_target` gives it).
        locations: :class:`rawprobe.Location` objects of that file.
        retprobe: For return probes.
        pids: With ``-p``, the traced processes.

    Returns:
        Per location, the reason :func:`~rawprobe._plan.sites.check_site` refuses it, or None.
    """
    from .._symbols import describe_target

    target = TargetFile(path)
    try:
        go_evidence = describe_target(path).go_evidence or ""
        return [
            check_site(target, Site(location.symbol, location.file_offset,
                                    location.symbol_offset, location.size,
                                    kind="offset" if location.symbol is None else location.kind),
                       retprobe=retprobe, go_evidence=go_evidence, pids=pids)
            for location in locations
        ]
    finally:
        target.close()


def sites_of(spec: ProbeSpec, target: TargetFile, *, force: bool) -> tuple[list[Site], str]:
    """The sites a spec names in ``target``, and why the file is a Go program (or "")."""
    if spec.kind == "usdt":
        from .._usdt import find_usdt_probes

        if spec.ref_ctr_offset is not None:
            raise UsageError(
                f"{spec.text}: a USDT probe's semaphore comes from its note; drop the "
                "(OFFSET) after the place"
            )
        return [
            Site(probe.name, probe.file_offset, ref_ctr_offset=probe.semaphore_offset or 0,
                 usdt_args=probe.arguments, kind="usdt")
            for probe in find_usdt_probes(target.path, spec.location, expect_key=target.key)
        ], ""
    from .._symbols import describe_target, resolve_location

    locations = resolve_location(target.path, spec.location, force=force,
                                 expect_key=target.key)
    if spec.ref_ctr_offset is not None:
        _check_ref_ctr(spec, target, force)
    go_evidence = describe_target(target.path).go_evidence or ""
    return [
        Site(location.symbol, location.file_offset, location.symbol_offset, location.size,
             spec.ref_ctr_offset or 0, None,
             "offset" if location.symbol is None else location.kind, location.warning)
        for location in locations
    ], go_evidence

def _check_ref_ctr(spec: ProbeSpec, target: TargetFile, force: bool) -> None:
    """A reference counter the kernel raises must be a semaphore a USDT note names: any
    other word of the program's data would be incremented under its feet."""
    if force:
        return
    from .._usdt import semaphore_offsets

    if spec.ref_ctr_offset not in semaphore_offsets(target.path):
        raise UsageError(
            f"{spec.text}: ({spec.ref_ctr_offset:#x}) is not the file offset of a USDT "
            f"semaphore of {target.path} (see 'rawprobe list --usdt {target.path}'): the "
            "kernel would increment whatever is there while the probe is planted, changing "
            "the program's data; --force to do it anyway"
        )


def _some(names: Sequence[str], shown: int = 5) -> str:
    """The first few names, and how many more."""
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def site_warnings(spec: ProbeSpec, sites: Sequence[Site], left_out: dict[str, list[str]],
                  glob: bool) -> list[str]:
    """What a user should know about the sites a word planted (and left out)."""
    warnings: list[str] = []
    ifuncs = [site.symbol or hex(site.file_offset) for site in sites
              if site.kind == "ifunc" and site.symbol_offset == 0]
    for site in sites:
        if site.warning and not (glob and site.kind == "ifunc"):
            warnings.append(f"{site.symbol or spec.location}: {site.warning}")
    if glob and ifuncs:
        warnings.append(
            f"{len(ifuncs)} of the functions {spec.location} matches are indirect "
            f"functions (IFUNC) ({_some(ifuncs)}): their probes hit the resolver the "
            "dynamic linker runs once, not the calls; probe the implementations")
    for reason, symbols in left_out.items():
        warnings.append(f"{len(symbols)} of the functions {spec.location} matches "
                        f"left out ({_some(symbols)}): {reason}")
    return warnings
