"""Probes as typed objects, for code that builds them rather than writing probe words.

Each object renders to the probe word it stands for (:attr:`Probe.word`), so a probe means
exactly the same thing whichever way it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Probe", "Uprobe", "Uretprobe", "Usdt"]


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


@dataclass(frozen=True)
class Uprobe(Probe):
    """An entry probe: ``Uprobe("libc", "malloc", fetch={"size": "%di:u64"})``.

    Attributes:
        target: A path or a library name (``libc``).
        location: ``SYMBOL``, ``SYMBOL+OFFSET``, ``0xOFFSET`` or a glob.
        fetch: Field name → fetch-arg (``"%di:u64"``, ``"+0($arg1):string"``), in order.
        name: The event name (default: the symbol's).
    """

    target: str
    location: str
    fetch: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None

    @property
    def word(self) -> str:
        return f"{_head('p', self.name)}{self.target}:{self.location}{_fetch_text(self.fetch)}"


@dataclass(frozen=True)
class Uretprobe(Uprobe):
    """A return probe: ``Uretprobe("libc", "malloc", fetch={"ptr": "$retval:x64"})``."""

    @property
    def word(self) -> str:
        return f"{_head('r', self.name)}{self.target}:{self.location}{_fetch_text(self.fetch)}"


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
    def word(self) -> str:
        place = f"{self.provider}:{self.probe}" if self.provider else self.probe
        return f"{_head('usdt', self.name)}{self.target}:{place}{_fetch_text(self.fetch)}"
