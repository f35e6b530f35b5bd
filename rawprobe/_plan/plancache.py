"""The plan cache: what a probe word planned to, kept for the next run that names it.

Planning a word resolves its target and location (symbol index, USDT notes), checks every site
(:func:`~rawprobe._plan.sites.check_site`), and compiles its fetch-args, filter and aggregation
into BPF configurations and record layouts: tens of milliseconds of imports (construct, the
fetch-arg and filter parsers, the compiler) before the work itself. The next run that names
the same word with the same options takes the result from here instead.

An entry is used only while everything that decided it still holds:

- the key: the word, the filter, every option that changes a plan (string size, aggregation,
  stacks, ``--force``, whether ``-p`` is given, the debug directories), and a fingerprint of
  the code that plans (sizes and times of rawprobe's planning modules and of its BPF object);
- the target: the word's TARGET resolves (now, for this run's ``-p`` process) to a file with
  the same name and the identity (device, inode, size, mtime, ctime) the entry recorded, and
  every debug file the symbol index used still has its identity;
- with ``-p``: each process still maps that file (the one check of
  :func:`~rawprobe._plan.sites.check_site` that depends on the process rather than the file).

Entries live in the symbol cache's directory, under its rules (a directory owned by the
effective user and writable by nobody else, entries 0600, written atomically): what is read
from there decides where breakpoints go, so nobody else may write it. They are marshalled
tuples; the parsed fetch-args and filter (what only the tracefs backend reads) are pickled
inside and unpickled only when asked for.
"""

from __future__ import annotations

import marshal
import os
import zlib

from .._symbols._cache import default_cache

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .._host.files import TargetFile
    from .._probe.words import ProbeSpec
    from .planner import Planner
    from .session import PlannedEvent

__all__ = ["CachedWord", "cache_key", "capture", "fingerprint", "load", "plan_cached", "remember",
           "restore_events", "store"]

FORMAT = 2
_SUFFIX = ".plan"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The code that decides what a word plans to.
_PLANNING = ("_plan", "_probe", "_symbols", "_usdt", "_dwarf")

_fingerprint: int | None = None


def fingerprint() -> int:
    """A number that changes when rawprobe's planning code or its BPF object changes."""
    global _fingerprint
    if _fingerprint is None:
        value = FORMAT
        paths = [os.path.join(_PACKAGE, "_version.py")]
        for directory in _PLANNING:
            try:
                with os.scandir(os.path.join(_PACKAGE, directory)) as entries:
                    paths += [entry.path for entry in entries if entry.name.endswith(".py")]
            except OSError:
                continue
        paths += [os.path.join(root, "bpfobj", name) for root in (_PACKAGE,
                                                                  os.path.dirname(_PACKAGE))
                  if os.path.isdir(os.path.join(root, "bpfobj"))
                  for name in sorted(os.listdir(os.path.join(root, "bpfobj")))]
        for path in sorted(paths):
            try:
                info = os.stat(path)
            except OSError:
                continue
            value = zlib.crc32(f"{path}\0{info.st_size}\0{info.st_mtime_ns}".encode(), value)
        _fingerprint = value
    return _fingerprint


def file_identity(path: str) -> tuple[int, int, int, int, int]:
    """A file's identity as the symbol cache keys it; all -1 when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1, -1, -1, -1)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class CachedWord:
    """One word's plan, as stored.

    Attributes:
        kind: The word's kind (``p``, ``r``, ``usdt``).
        target: The word's TARGET, as written.
        path: The file it resolved to.
        identity: That file's identity.
        dependencies: ``(path, identity)`` of each debug file the symbol index used.
        warnings: What the planner warned about.
        names: The event names the word produced, in order.
        configs: The BPF configurations its events use.
        layouts: Their record layouts (:meth:`RecordLayout.state`).
        details: Pickled ``(fetchargs, usdt_args, filter)`` of its events.
        events: Per event: ``(config, layout, details, name, file_offset, retprobe,
            ref_ctr_offset, reads_memory, tally, tally_only, role, from_glob, at_entry,
            value_signed, key_parts, span_offset)``, the first three indexes into the lists
            above; ``key_parts`` the grouping key's layout as plain values, ``span_offset``
            a latency pair's entry relative to the word's first event (-1: none).
    """

    def __init__(self, kind: str, target: str, path: str, identity: tuple[int, ...],
                 dependencies: list[tuple[str, tuple[int, ...]]], warnings: list[str],
                 names: list[str], configs: list[bytes], layouts: list[Any],
                 details: list[bytes], events: list[tuple[Any, ...]]) -> None:
        self.kind = kind
        self.target = target
        self.path = path
        self.identity = identity
        self.dependencies = dependencies
        self.warnings = warnings
        self.names = names
        self.configs = configs
        self.layouts = layouts
        self.details = details
        self.events = events

    def fresh(self, target: TargetFile) -> bool:
        """Whether the entry still describes ``target`` (opened from this run's resolution
        of :attr:`target`) and the debug files its symbols came from."""
        if os.path.basename(target.path) != os.path.basename(self.path):
            return False  # event names at raw offsets are made from the file's name
        if tuple(target.key) != tuple(self.identity):
            return False
        return all(file_identity(path) == tuple(identity)
                   for path, identity in self.dependencies)


def _entry_name(key: tuple[Any, ...]) -> str:
    text = repr(key).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}{_SUFFIX}"


def load(key: tuple[Any, ...]) -> CachedWord | None:
    """The entry stored under ``key``, or None (absent, unreadable, or another key's)."""
    cache = default_cache()
    data = cache.read(_entry_name(key))
    if data is None:
        return None
    try:
        stored_key, fields = marshal.loads(data)
        if stored_key != key:
            return None
        return CachedWord(*fields)
    except (ValueError, EOFError, TypeError):
        return None


def store(key: tuple[Any, ...], word: CachedWord) -> None:
    """Keep ``word``'s plan under ``key`` (silently nothing when the cache is not usable)."""
    fields = (word.kind, word.target, word.path, tuple(word.identity), word.dependencies,
              word.warnings, word.names, word.configs, word.layouts, word.details, word.events)
    try:
        data = marshal.dumps((key, fields))
    except ValueError:  # something in it marshal cannot write: leave this word uncached
        return
    default_cache().write(_entry_name(key), data)


def capture(kind: str, target_text: str, target: TargetFile,
            dependencies: list[tuple[str, tuple[int, ...]]], warnings: list[str],
            names: list[str], events: Sequence[PlannedEvent],
            configs: Sequence[bytes], first_id: int) -> CachedWord | None:
    """The entry for one word's planned events (None when something in them cannot be
    stored: its details do not pickle).

    Args:
        kind: The word's kind.
        target_text: Its TARGET as written.
        target: The file it resolved to.
        dependencies: The debug files its symbols came from, with their identities.
        warnings: What planning it warned about.
        names: Its event names.
        events: Its planned events.
        configs: The planner's configurations, by id.
        first_id: The event id of the word's first event.
    """
    config_index: dict[int, int] = {}
    layout_index: dict[Any, int] = {}
    details_index: dict[bytes, int] = {}
    stored_configs: list[bytes] = []
    layouts: list[Any] = []
    rows = []
    try:
        for event in events:
            config = config_index.setdefault(event.config_id, len(config_index))
            if config == len(stored_configs):
                stored_configs.append(configs[event.config_id])
            state = event.layout.state()
            layout = layout_index.setdefault(state[1:], len(layout_index))
            if layout == len(layouts):
                layouts.append(state)
            details = details_index.setdefault(event.details.pickled(), len(details_index))
            rows.append((config, layout, details, event.name, event.file_offset,
                         event.retprobe, event.ref_ctr_offset, event.reads_memory, event.tally,
                         event.tally_only, event.role, event.from_glob, event.at_entry,
                         event.value_signed, tuple(
                             (part.name, part.at_start, int(part.kind), part.size, part.dest,
                              None if part.type is None else part.type.state())
                             for part in event.key_parts),
                         event.span_id - first_id if event.span_id >= 0 else -1))
    except Exception:  # pickle refuses something: plan this word afresh each time
        return None
    return CachedWord(kind, target_text, target.path, tuple(target.key), dependencies,
                      list(warnings), list(names), stored_configs, layouts,
                      list(details_index), rows)


def restore_events(entry: CachedWord, first_id: int, config_ids: Sequence[int],
                   target: TargetFile) -> list[PlannedEvent]:
    """The planned events of a cached word, numbered from ``first_id``.

    Args:
        entry: The entry (checked: :meth:`CachedWord.fresh`).
        first_id: The event id of its first event.
        config_ids: The planner's id of each of the entry's configurations.
        target: The opened file the events go into.
    """
    from .events import RecordLayout
    from .session import EventDetails, PlannedEvent

    layouts = [RecordLayout.restore(state) for state in entry.layouts]
    keys: dict[Any, tuple[tuple[Any, ...], Any]] = {}
    details = [EventDetails(pickled=blob) for blob in entry.details]
    named: dict[tuple[int, str], RecordLayout] = {}
    events: list[PlannedEvent] = []
    for (config, layout_id, details_id, name, file_offset, retprobe, ref_ctr_offset,
         reads_memory, tally, tally_only, role, from_glob, at_entry, value_signed, parts,
         span_offset) in entry.events:
        layout = layouts[layout_id]
        if layout.event != name:
            layout = named.get((layout_id, name)) or named.setdefault(
                (layout_id, name), layout.renamed(name))
        events.append(PlannedEvent(
            first_id + len(events), config_ids[config], target.path, target.kernel_path,
            file_offset, retprobe, ref_ctr_offset, None, layout, reads_memory, tally,
            tally_only, role=role, from_glob=from_glob, at_entry=at_entry,
            value_signed=value_signed, details=details[details_id],
            span_id=first_id + span_offset if span_offset >= 0 else -1,
            **_keys(keys, parts)))
    return events


def _keys(known: dict[Any, tuple[tuple[Any, ...], Any]], parts: tuple[Any, ...]
          ) -> dict[str, Any]:
    """``key_parts`` and ``key_decoder`` of stored key parts (made once per layout)."""
    if not parts:
        return {}
    if parts not in known:
        from .._probe.argtype import ArgType
        from .aggregate import KeyPart, key_decoder

        made = tuple(KeyPart(name, at_start, kind, size, dest,
                             None if state is None else ArgType(*state))
                     for name, at_start, kind, size, dest, state in parts)
        known[parts] = (made, key_decoder(made))
    key_parts, decoder = known[parts]
    return {"key_parts": key_parts, "key_decoder": decoder}


# -- the planner's use of it ---------------------------------------------------------------


def cache_key(planner: Planner, probe: object, filter_text: str | None
              ) -> tuple[Any, ...] | None:
    """What decides a word's plan besides its files (None: a typed probe or a span, not
    cached)."""
    if not isinstance(probe, str):
        return None
    return (fingerprint(), probe, filter_text, planner.string_size, repr(planner.aggregation),
            planner.stack, planner.force, bool(planner.pids),
            os.environ.get("RAWPROBE_DEBUG_ROOT"))


def plan_cached(planner: Planner, key: tuple[Any, ...]) -> list[str] | None:
    """Plan a word from the cache into ``planner``; None when there is no entry still true
    here (the word is then planned afresh, which also says what is wrong, if anything)."""
    entry = load(key)
    if entry is None or planner.has_span:
        return None
    from .._errors import RawprobeError
    from .._host.files import TargetFile
    from .._symbols._target import find_target

    try:
        path = find_target(entry.target, planner.pids[0] if planner.pids else None)
        opened = planner.opened(path)
        target = opened or TargetFile(path)
    except RawprobeError:
        return None
    fresh = entry.fresh(target)
    if fresh and planner.pids:
        from .sites import maps_file

        fresh = not all(maps_file(pid, target) is False for pid in planner.pids)
    if not fresh or any(name in planner.names for name in entry.names):
        if opened is None:
            target.close()
        return None
    planner.adopt(target, restore_events(
        entry, len(planner.events), [planner.config_id(config) for config in entry.configs],
        target), entry.warnings)
    return list(entry.names)


def remember(planner: Planner, key: tuple[Any, ...], spec: ProbeSpec, first_event: int,
             first_warning: int, names: list[str]) -> None:
    """Keep what ``spec`` planned to (the planner's events from ``first_event`` on) when the
    cache can give it back exactly: the uprobes of one file (a latency measurement's pairs
    included, not a span between two words)."""
    events = planner.events[first_event:]
    if (spec.kind not in ("p", "r", "usdt") or not events or planner.has_span
            or any(event.kind != "uprobe" or event.path != events[0].path
                   or (event.span_id != -1 and not first_event <= event.span_id < len(
                       planner.events)) for event in events)):
        return
    target = planner.opened(events[0].path)
    if target is None:
        return
    dependencies: list[tuple[str, tuple[int, ...]]] = []
    if spec.kind != "usdt":
        from .._symbols import open_index

        dependencies = [(path, tuple(identity)) for path, identity in
                        open_index(target.path, expect_key=target.key).dependencies]
    entry = capture(spec.kind, spec.target, target, dependencies,
                    planner.warnings[first_warning:], names, events, planner.configs(),
                    first_event)
    if entry is not None:
        store(key, entry)
