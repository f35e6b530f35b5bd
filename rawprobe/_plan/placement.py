"""Where a word's probes go and what each reads: a :class:`Placement` per site. A word that
needs no debug information is placed here (:func:`plain_placements`); one that does, by
:mod:`rawprobe._plan.variables`, which reads the DWARF.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._values import Record

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from .._probe.fetchargs import FetchArg
    from .._probe.words import ProbeSpec
    from .sites import Site

__all__ = ["Placement", "fallbacks", "plain_placements"]


class Placement(Record):
    """One probe site of a word, and what the probe reads there.

    Attributes:
        site: Where the probe goes.
        event_symbol: What the event is named after (the function asked for, ``main_L27`` for
            a source line), or None: a raw offset's name.
        fetchargs: The fetch-args, in the kernel's language only.
        return_site: Where a return probe for the same call goes (``--hist latency``), when
            not at ``site``: a function's entry, when ``site`` is past its prologue.
        address: The site's address in the debug information's terms (ELF virtual address),
            when the debug information placed it.
        function: Whose variables it reads there (an inlined copy's function, a source
            line's), when the debug information placed it; None: the function holding it.
        name_offset: The offset into ``event_symbol`` the event's name carries (``add_5``
            for ``add+5``); 0 for a function's probe, even past its prologue, as perf names it.
    """

    __slots__ = ("address", "event_symbol", "fetchargs", "function", "name_offset",
                 "return_site", "site")

    site: Site
    event_symbol: str | None
    fetchargs: tuple[FetchArg, ...]
    return_site: Site | None
    address: int | None
    function: str | None
    name_offset: int

    def __init__(self, site: Site, event_symbol: str | None, fetchargs: tuple[FetchArg, ...],
                 return_site: Site | None = None, address: int | None = None,
                 function: str | None = None, name_offset: int = 0) -> None:
        for name, value in (("site", site), ("event_symbol", event_symbol),
                            ("fetchargs", fetchargs), ("return_site", return_site),
                            ("address", address), ("function", function),
                            ("name_offset", name_offset)):
            object.__setattr__(self, name, value)


def plain_placements(spec: ProbeSpec, sites: Sequence[Site]) -> list[Placement]:
    """The placements of a word that does not need the debug information."""
    from .._probe.fetchargs import DebugVariable

    fetchargs = spec.fetchargs
    if any(isinstance(arg.source, DebugVariable) for arg in fetchargs):
        fetchargs = fallbacks(fetchargs)
    return [Placement(site, site.symbol, fetchargs, name_offset=site.symbol_offset)
            for site in sites]


def fallbacks(fetchargs: Sequence[FetchArg]) -> tuple[FetchArg, ...]:
    """The kernel meaning of each untyped ``$retval`` (the file has no debug information)."""
    from .._probe.fetchargs import DebugVariable

    result = []
    for arg in fetchargs:
        source = arg.source
        if isinstance(source, DebugVariable):
            if source.fallback is None:  # pragma: no cover - callers check uses_debug_info
                from .._dwarf import DwarfError

                raise DwarfError(f"{arg.text} needs the debug information")
            import dataclasses

            arg = dataclasses.replace(arg, source=source.fallback)
        result.append(arg)
    return tuple(result)
