"""USDT (SystemTap SDT) probes: reading ``.note.stapsdt`` and translating argument specs.

A USDT probe is a ``nop`` a program marks with ``<sys/sdt.h>`` (``DTRACE_PROBEn``,
``STAP_PROBEn``), described by an ELF note: provider, name, address, an optional semaphore,
and where each argument is at that ``nop`` (``-4@%edi``). rawprobe plants a uprobe on the
``nop`` and reads ``$argN`` from where the note says it is; a probe's semaphore goes to the
kernel as the uprobe's ``ref_ctr_offset``, so the kernel raises it in every process mapping the
file while the probe is planted (rawprobe never writes into a traced process).

Entry points (the rest of rawprobe uses only these):

- :func:`find_usdt_probes` turns a USDT LOCATION (``[PROVIDER:]NAME``) into probe sites with
  translated arguments, for the Tracer;
- :func:`list_usdt_probes` lists a file's probe sites, arguments as the notes write them;
- :func:`parse_stapsdt_notes` and :func:`translate_argument` are the pure layers beneath.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from .._probe.fetchargs import FetchArg, Memory, UsdtArg, UsdtArgument
from ._argspec import translate_argument
from ._elf import UsdtFile, UsdtSite, open_usdt_file
from ._errors import UsdtArgumentError, UsdtNoteError, UsdtNotFoundError
from ._notes import SdtNote, parse_stapsdt_notes, split_argument_specs

__all__ = [
    "SdtNote",
    "UsdtArgumentError",
    "UsdtNotFoundError",
    "UsdtNoteError",
    "UsdtProbe",
    "UsdtSite",
    "default_fetchargs",
    "find_usdt_probes",
    "list_usdt_probes",
    "parse_stapsdt_notes",
    "semaphore_offsets",
    "split_argument_specs",
    "translate_argument",
]

_GLOB_CHARACTERS = "*?["
_MAX_NAMES_SHOWN = 20


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe site.

    Attributes:
        provider: The provider (``python``).
        name: The probe name (``function__entry``).
        address: The probe's address in the ELF.
        file_offset: Where to plant the uprobe.
        semaphore_offset: File offset of the probe's semaphore (the kernel's ref_ctr_offset),
            or ``None`` when the probe has none.
        arguments: The probe's arguments, translated from the note's specs. An argument whose
            spec cannot be translated has ``error`` set, and reading it is refused.
    """

    provider: str
    name: str
    address: int
    file_offset: int
    semaphore_offset: int | None
    arguments: tuple[UsdtArgument, ...]


def default_fetchargs(arguments: tuple[UsdtArgument, ...]) -> tuple[FetchArg, ...]:
    """The fetch-args of a USDT probe word that names none: ``argN=$argN`` for each argument.

    perf's SDT events record every argument of the note the same way (``perf probe
    sdt_PROVIDER:NAME``), each typed with its own size and sign. An argument whose spec
    cannot be translated is left out rather than refused: nobody asked for it.

    Args:
        arguments: The probe site's arguments.

    Returns:
        One untyped fetch-arg per readable argument, named ``arg1``, ``arg2``, ... by position.
    """
    return tuple(
        FetchArg(f"arg{index}", UsdtArg(index), argument.type, f"$arg{index}", 0, typed=False)
        for index, argument in enumerate(arguments, start=1)
        if argument.error is None
    )


def list_usdt_probes(path: str, pattern: str | None = None) -> list[UsdtSite]:
    """The USDT probe sites of ``path``, in note order.

    Args:
        path: The ELF file.
        pattern: A glob over ``NAME`` (or over ``PROVIDER:NAME`` when it holds a ``:``);
            ``None`` lists every site.

    Returns:
        The matching sites, their arguments as the notes write them.

    Raises:
        UsdtNotFoundError: The file has no SDT notes, or nothing matches ``pattern``.
        TargetNotFoundError, NotElfError, UsdtNoteError: The file cannot be read.
    """
    usdt_file = _with_notes(path)
    if pattern is None:
        return list(usdt_file.sites)
    return _select(usdt_file, pattern, globbing=True)


def semaphore_offsets(path: str) -> set[int]:
    """The file offsets of every USDT semaphore of ``path`` (empty without SDT notes)."""
    try:
        usdt_file = open_usdt_file(path)
    except UsdtNoteError:
        return set()
    return {site.semaphore_offset for site in usdt_file.sites
            if site.semaphore_offset is not None}


def find_usdt_probes(path: str, location: str,
                     expect_key: tuple[int, ...] | None = None) -> list[UsdtProbe]:
    """Every site of the USDT probe ``[PROVIDER:]NAME`` in ``path``.

    A name may be a glob (``function__*``). Without a provider, the name must not match
    probes of two providers under one name (``a:start`` and ``b:start``): their events would
    be indistinguishable, so the error lists them and asks for ``PROVIDER:NAME``. A probe
    inlined at several places has several sites; all of them are returned.

    Args:
        path: The ELF file.
        location: ``[PROVIDER:]NAME``.

    Returns:
        The sites, in note order, their arguments translated.

    Raises:
        UsdtNotFoundError: No SDT notes, no such probe (the ones that exist are listed), or
            an ambiguous name.
        NotElfError: The file is not one rawprobe can probe (another machine, say).
        TargetNotFoundError, UsdtNoteError: The file cannot be read.
        TargetChangedError: ``path`` is no longer the file ``expect_key`` describes.
    """
    usdt_file = _with_notes(path, expect_key)
    sites = _select(usdt_file, location, globbing=any(ch in location for ch in
                                                      _GLOB_CHARACTERS))
    return [
        UsdtProbe(
            provider=site.provider,
            name=site.name,
            address=site.address,
            file_offset=site.file_offset,
            semaphore_offset=site.semaphore_offset,
            arguments=tuple(_translate(usdt_file, site, spec) for spec in site.argument_specs),
        )
        for site in sites
    ]


def _translate(usdt_file: UsdtFile, site: UsdtSite, spec: str) -> UsdtArgument:
    try:
        return translate_argument(
            spec,
            machine=usdt_file.machine,
            probe_address=site.address,
            symbol_address=usdt_file.symbol_address,
            relocatable=usdt_file.relocatable,
        )
    except UsdtArgumentError as error:
        # Kept, not raised: a probe is still worth planting for its other arguments. The
        # compiler refuses to read this one (rawprobe._plan.compile), naming the spec; the
        # unreadable address is a backstop that can only ever fault.
        return UsdtArgument(size=8, signed=False, source=Memory(0), text=spec,
                            error=f"{error}; rawprobe does not guess")


def _with_notes(path: str, expect_key: tuple[int, ...] | None = None) -> UsdtFile:
    usdt_file = open_usdt_file(path, expect_key)
    if not usdt_file.sites:
        what = "no .note.stapsdt section" if not usdt_file.has_notes else \
            "its .note.stapsdt section has no SDT notes"
        raise UsdtNotFoundError(
            f"{path} has no USDT probes ({what}): it was not built with <sys/sdt.h> probes; "
            f"run 'rawprobe list {path}' for the functions it has",
            path=path,
        )
    return usdt_file


def _select(usdt_file: UsdtFile, location: str, *, globbing: bool) -> list[UsdtSite]:
    provider, _, name = location.rpartition(":")
    if not name:
        raise UsdtNotFoundError(f"{location!r}: missing the probe NAME ([PROVIDER:]NAME)",
                                location, usdt_file.path)
    sites = usdt_file.sites
    if globbing:
        matched = [
            site for site in sites
            if fnmatch.fnmatchcase(site.name, name)
            and (not provider or fnmatch.fnmatchcase(site.provider, provider))
        ]
    else:
        matched = [
            site for site in sites
            if site.name == name and (not provider or site.provider == provider)
        ]
    if not matched:
        raise _not_found(usdt_file, location, provider, name)
    if not provider:
        providers_by_name: dict[str, list[str]] = {}
        for site in matched:
            names = providers_by_name.setdefault(site.name, [])
            if site.provider not in names:
                names.append(site.provider)
        shared = sorted(
            f"{provider_name}:{probe_name}"
            for probe_name, provider_names in providers_by_name.items()
            if len(provider_names) > 1
            for provider_name in provider_names
        )
        if shared:
            raise UsdtNotFoundError(
                f"{name!r} is ambiguous in {usdt_file.path}: several providers have a probe of "
                f"that name ({', '.join(shared)}); write PROVIDER:NAME",
                location, usdt_file.path, shared,
            )
    return matched


def _not_found(usdt_file: UsdtFile, location: str, provider: str,
               name: str) -> UsdtNotFoundError:
    path = usdt_file.path
    qualified = sorted({site.qualified_name for site in usdt_file.sites})
    providers = sorted({site.provider for site in usdt_file.sites})
    if provider and not any(ch in provider for ch in _GLOB_CHARACTERS) and \
            provider not in providers:
        return UsdtNotFoundError(
            f"no USDT provider {provider!r} in {path}; its providers are: "
            f"{', '.join(providers)}",
            location, path, qualified,
        )
    # Close names among the provider's probes (or every probe), shown as PROVIDER:NAME.
    names = sorted({site.name for site in usdt_file.sites
                    if not provider or fnmatch.fnmatchcase(site.provider, provider)})
    close = [
        f"{site.provider}:{site.name}"
        for close_name in difflib.get_close_matches(name, names, n=3, cutoff=0.7)
        for site in usdt_file.sites
        if site.name == close_name
    ]
    message = f"no USDT probe {location!r} in {path}"
    if close:
        message += f"; did you mean {', '.join(dict.fromkeys(close))}?"
    else:
        message += "."
    shown = qualified[:_MAX_NAMES_SHOWN]
    message += f" Its probes are: {', '.join(shown)}"
    if len(qualified) > len(shown):
        message += f", and {len(qualified) - len(shown)} more (rawprobe list --usdt {path})"
    return UsdtNotFoundError(message, location, path, qualified)
