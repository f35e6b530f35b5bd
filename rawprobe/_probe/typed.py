"""Probes as typed objects, for code that builds them rather than writing probe words.

Each object builds its :class:`~rawprobe._probe.words.ProbeSpec` directly (:meth:`Probe.spec`),
so a path with spaces or colons needs no quoting; :attr:`Probe.word` is the probe word it
stands for (quoting such a path), so it means exactly the same thing either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._errors import ProbeSyntaxError, UsageError
from .fetchargs import FetchArg, parse_fetcharg
from .words import ProbeSpec, quote_target

__all__ = ["Probe", "Span", "Uprobe", "Uretprobe", "Usdt"]


def _fetch_text(fetch: Mapping[str, str]) -> str:
    return "".join(f" {name}={fetcharg}" for name, fetcharg in fetch.items())


def _head(kind: str, name: str | None) -> str:
    return f"{kind}:{name} " if name else f"{kind} "


@dataclass(frozen=True)
class Probe:
    """Base of the typed probes."""

    @property
    def word(self) -> str:
        """The probe word this object stands for."""
        raise NotImplementedError

    def spec(self) -> ProbeSpec:
        """The parsed probe this object stands for.

        Raises:
            ProbeSyntaxError, FetchArgError: A bad name, location or fetch-arg.
        """
        raise NotImplementedError


def _fetchargs(fetch: Mapping[str, str], word: str, retprobe: bool,
               usdt: bool) -> tuple[FetchArg, ...]:
    args = []
    for index, (name, text) in enumerate(fetch.items(), start=1):
        args.append(parse_fetcharg(f"{name}={text}", index, word=word, retprobe=retprobe,
                                   usdt=usdt))
    names = [arg.name for arg in args]
    for name in names:
        if names.count(name) > 1:
            raise ProbeSyntaxError(f"field name {name!r} used twice", word)
    return tuple(args)


def _check_name(name: str | None, word: str) -> None:
    if name is not None and not (name.isidentifier() and name.isascii()):
        raise ProbeSyntaxError(
            f"{name!r} is not a valid event name ([A-Za-z_][A-Za-z0-9_]*)", word)


def _check_place(target: str, location: str, word: str) -> None:
    if not target:
        raise ProbeSyntaxError("empty TARGET: give a path or a library name", word)
    if not location.strip():
        raise ProbeSyntaxError("empty LOCATION: give a function name, NAME+OFFSET or 0xOFFSET",
                               word)


@dataclass(frozen=True)
class Uprobe(Probe):
    """An entry probe: ``Uprobe("libc", "malloc", fetch={"size": "%di:u64"})``.

    Attributes:
        target: A path (any characters) or a library name (``libc``).
        location: ``SYMBOL``, ``SYMBOL+OFFSET``, ``0xOFFSET`` or a glob.
        fetch: Field name → fetch-arg (``"%di:u64"``, ``"+0($arg1):string"``), in order.
        name: The event name (default: the symbol's).
    """

    target: str
    location: str
    fetch: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None

    _kind = "p"

    @property
    def word(self) -> str:
        return (f"{_head(self._kind, self.name)}{quote_target(self.target)}:{self.location}"
                f"{_fetch_text(self.fetch)}")

    def spec(self) -> ProbeSpec:
        word = self.word
        _check_name(self.name, word)
        _check_place(self.target, self.location, word)
        retprobe = self._kind == "r"
        return ProbeSpec(self._kind, None, self.name, self.target, self.location.strip(), None,
                         _fetchargs(self.fetch, word, retprobe, False), word)


@dataclass(frozen=True)
class Uretprobe(Uprobe):
    """A return probe: ``Uretprobe("libc", "malloc", fetch={"ptr": "$retval:x64"})``."""

    _kind = "r"


@dataclass(frozen=True)
class Usdt(Probe):
    """A USDT probe: ``Usdt("/usr/bin/python3.11", "python", "function__entry")``.

    Attributes:
        target: A path or a library name.
        provider: The provider (``None``: any, when the name is unique).
        probe: The probe name.
        fetch: Field name → fetch-arg (``$argN`` is the N-th USDT argument).
        name: The event name (default: the probe's).
    """

    target: str
    provider: str | None
    probe: str
    fetch: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None

    @property
    def _location(self) -> str:
        return f"{self.provider}:{self.probe}" if self.provider else self.probe

    @property
    def word(self) -> str:
        return (f"{_head('usdt', self.name)}{quote_target(self.target)}:{self._location}"
                f"{_fetch_text(self.fetch)}")

    def spec(self) -> ProbeSpec:
        word = self.word
        _check_name(self.name, word)
        _check_place(self.target, self.probe, word)
        return ProbeSpec("usdt", None, self.name, self.target, self._location, None,
                         _fetchargs(self.fetch, word, False, True), word)


@dataclass(frozen=True)
class Span:
    """The time from a hit of ``start`` to the matching hit of ``end`` (``--span``): a query
    from ``query__start`` to ``query__done``, a request from one function to another.

    Attributes:
        start: The probe where a span starts (a word, a spec or a typed probe).
        end: The probe where it ends.
        key: What a START and its END share: ``tid`` (the same thread, the default), or
            the name of an integer field both probes fetch (a query pointer, a request id).

    With an aggregation, ``latency`` (ns) is what ``--hist``/``--stats``/... measure, grouped
    by keys read at END (fields only START has are read at START); streamed, each END event
    carries a ``latency`` field.
    """

    start: str | ProbeSpec | Probe
    end: str | ProbeSpec | Probe
    key: str = "tid"

    def __post_init__(self) -> None:
        if not (self.key.isidentifier() and self.key.isascii()):
            raise UsageError(f"--key {self.key!r}: give tid or a field name")
