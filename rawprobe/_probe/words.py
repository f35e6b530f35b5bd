"""Probe words: ``p:/bin/bash:readline``, ``r:libc:malloc ret=$retval``, ``usdt:...``.

One probe is one shell word. Two spellings of the head are accepted: the kernel's
uprobe_events spelling, where an optional ``[GROUP/]EVENT`` name follows the probe type and the
place comes after a space (``p:myev /bin/bash:readline``, ``p /bin/bash:readline``), and the
short spelling bcc's ``trace`` and bpftrace users type, with the place right after the colon
(``p:/bin/bash:readline``). Event names never contain ``:``, so a head ``p:X:Y`` is always the
short spelling. A bare place (``/bin/bash:readline``, ``libc:malloc%return``) is an entry probe,
or a return probe with the kernel's ``%return`` suffix.

Kernel-side probes share the word's shape: ``tp:GROUP:EVENT [FIELD ...]`` for a tracepoint
(fields by their names in the event's ``format`` file) and ``sys:NAME`` for a system call
(NAME may be a glob: ``sys:open*``, ``sys:*``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .._errors import ProbeSyntaxError
from .fetchargs import DebugVariable, FetchArg, c_integer, parse_event_field, parse_fetcharg

__all__ = [
    "LineLocation",
    "ProbeSpec",
    "default_event_name",
    "is_glob",
    "is_offset_location",
    "parse_line_location",
    "parse_probe",
    "quote_target",
    "split_place",
]

_HEAD = re.compile(r"(p|r|usdt)(?::(.*))?")
_KERNEL_HEAD = re.compile(r"(tp|sys):(.*)")
_KERNEL_NAME = re.compile(r"[A-Za-z0-9_*?\[\]]+")
_EVENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OTHER_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9_]*):(.+)", re.DOTALL)
# Other tracers' kernel probe types: what rawprobe writes for them, or None (not planted yet).
_KERNEL_TYPES = {"t": "tp:", "tracepoint": "tp:", "syscall": "sys:", "k": None, "kr": None,
                 "kprobe": None, "kretprobe": None, "f": None, "fentry": None, "fexit": None,
                 "e": None, "rawtracepoint": None, "software": None, "hardware": None,
                 "profile": None, "interval": None}
_BPFTRACE_TYPES = {"uprobe": "p", "uretprobe": "r"}
_REF_CTR = re.compile(r"\((0[xX][0-9a-fA-F]+|\d+)\)$")


@dataclass(frozen=True)
class ProbeSpec:
    """A parsed probe word, before its target is resolved.

    Attributes:
        kind: ``p`` (entry), ``r`` (return), ``usdt``, ``tp`` (a kernel tracepoint) or ``sys``
            (a system call).
        group: The ``GROUP`` of ``GROUP/EVENT``, if given.
        event: The event name, if given (otherwise it is derived from the symbol).
        target: The file or library, as written; for ``tp`` the tracepoint's group, for
            ``sys`` empty.
        location: ``SYMBOL``, ``SYMBOL+OFF``, ``0xOFFSET`` or a glob; for USDT ``[PROVIDER:]NAME``;
            for ``tp`` the event (or a glob), for ``sys`` the system call (or a glob).
        ref_ctr_offset: A semaphore offset given as ``(OFFSET)`` after the place, if any.
        fetchargs: The fetch-args, in order.
        text: The word as written.
    """

    kind: str
    group: str | None
    event: str | None
    target: str
    location: str
    ref_ctr_offset: int | None
    fetchargs: tuple[FetchArg, ...]
    text: str

    @property
    def retprobe(self) -> bool:
        return self.kind == "r"

    @property
    def kernel(self) -> bool:
        """A kernel-side probe (``tp:`` or ``sys:``), not a uprobe."""
        return self.kind in ("tp", "sys")

    @property
    def place(self) -> str:
        return f"{self.target}:{self.location}"

    @property
    def source_line(self) -> LineLocation | None:
        """The source line LOCATION names (``main.c:27``, ``add:3``), or None."""
        return None if self.kind == "usdt" else parse_line_location(self.location)

    @property
    def uses_debug_info(self) -> bool:
        """Whether planning it needs the file's debug information: a source line, or a
        variable named from it (an untyped ``$retval`` only uses it where there is some)."""
        return self.source_line is not None or any(
            isinstance(arg.source, DebugVariable) and arg.source.fallback is None
            for arg in self.fetchargs)


@dataclass(frozen=True)
class LineLocation:
    """A LOCATION that names a source line, as perf probe spells them.

    Attributes:
        file: ``FILE:LINE``: the source file (a path, or its last components), else None.
        function: ``FUNC:N``: the function, else None.
        line: LINE, or N: lines after the one that declares FUNC (``FUNC:0`` is that line).
    """

    file: str | None
    function: str | None
    line: int

    def __str__(self) -> str:
        return f"{self.file or self.function}:{self.line}"


_SOURCE_LINE = re.compile(r"(.*[^:]):(\d+)")


def parse_line_location(location: str) -> LineLocation | None:
    """``FILE:LINE`` or ``FUNC:N`` (what :func:`split_place` leaves as a LOCATION), or None.

    As perf probe decides (tools/perf/util/probe-event.c, ``parse_perf_probe_point``): a name
    with a ``.`` or a ``/`` is a source file, any other a function.
    """
    match = _SOURCE_LINE.fullmatch(location)
    if match is None:
        return None
    name, line = match.group(1), int(match.group(2))
    if "." in name or "/" in name:
        return LineLocation(name, None, line)
    return LineLocation(None, name, line)


_GLOB_CHARS = "*?["


def is_offset_location(location: str) -> bool:
    """Whether a LOCATION is a raw file offset (``0x1139``, ``4409``)."""
    text = location.strip().lower()
    if text.startswith("0x"):
        return len(text) > 2 and all(char in "0123456789abcdef" for char in text[2:])
    return text.isdigit()


def is_glob(location: str) -> bool:
    """Whether a LOCATION (or a USDT NAME) is a glob pattern (``mem*``)."""
    return any(char in location for char in _GLOB_CHARS)


def quote_target(target: str) -> str:
    """A TARGET as a probe word spells it: quoted when it holds whitespace, a colon or a
    quote (``"/opt/my app/bin"``); a quote inside is written ``\\"``."""
    if not target or any(char.isspace() or char in ':"' for char in target):
        return '"' + target.replace('"', '\\"') + '"'
    return target


def _split_quoted(place: str, word: str, column: int) -> tuple[str, str]:
    """``"TARGET":LOCATION``: a TARGET in double quotes may hold anything (``\\"`` for a
    quote)."""
    position, target = 1, []
    while position < len(place):
        char = place[position]
        if char == "\\" and place[position + 1 : position + 2] == '"':
            target.append('"')
            position += 2
            continue
        if char == '"':
            break
        target.append(char)
        position += 1
    else:
        raise ProbeSyntaxError("unterminated quoted TARGET", word or place, column)
    if place[position + 1 : position + 2] != ":" or position + 2 >= len(place):
        raise ProbeSyntaxError(
            'a quoted TARGET is followed by :LOCATION ("/opt/my app/bin":main)',
            word or place, column + position + 1)
    if not target:
        raise ProbeSyntaxError("empty TARGET", word or place, column)
    return "".join(target), place[position + 2 :]


def split_place(
    place: str, word: str = "", column: int = 0, *, usdt: bool = False
) -> tuple[str, str]:
    """Split ``TARGET:LOCATION``.

    A LOCATION may hold colons of its own: C++ scopes (``ns::f``, any run of two) and ABI tags
    (``f[abi:cxx11]()``, inside brackets), so the separator is the last colon that is neither
    (in a run of odd length, the first one: ``app:::f`` is ``app`` and ``::f``); a TARGET path
    may then contain a colon as long as the LOCATION has none. A source line (``FILE:LINE``,
    ``FUNC:N``: digits after the last colon, and another colon before) keeps that last colon
    in the LOCATION: ``./main:main.c:27`` is ``./main`` and ``main.c:27`` (a TARGET with a
    colon is then quoted). A USDT place, ``TARGET:[PROVIDER:]NAME``, splits at its first such
    colon instead.

    A TARGET in double quotes (``"/opt/my app/bin":main``) may hold spaces and colons.

    Raises:
        ProbeSyntaxError: No separator, or an empty TARGET or LOCATION.
    """
    if place.startswith('"'):
        return _split_quoted(place, word, column)
    candidates = []
    position = 0
    while position < len(place):
        if place[position] != ":":
            position += 1
            continue
        run_end = position
        while run_end < len(place) and place[run_end] == ":":
            run_end += 1
        if (run_end - position) % 2 == 1:
            candidates.append(position)
        position = run_end
    if not usdt:
        candidates.reverse()
        if len(candidates) > 1 and place[candidates[0] + 1 :].isdigit():
            # FILE:LINE or FUNC:N: the location holds the last colon, the target none.
            candidates.pop(0)
    for candidate in candidates:
        tail = place[candidate + 1 :]
        if tail.count("]") > tail.count("["):
            continue  # inside [abi:...]: part of the location
        target, location = place[:candidate], tail
        if not location:
            raise ProbeSyntaxError(
                "missing LOCATION after ':' in TARGET:LOCATION (a symbol, SYMBOL+OFFSET or "
                "0xOFFSET)",
                word or place,
                column + candidate + 1,
            )
        if target:
            return target, location
        break
    raise ProbeSyntaxError(
        f"{place!r} is not TARGET:LOCATION (for example /bin/bash:readline or libc:malloc)",
        word or place,
        column,
    )


def _tokens(word: str) -> list[tuple[str, int]]:
    """Split on whitespace outside string constants (``\\"a b"``) and quoted TARGETs
    (``"/opt/my app/bin"``, where ``\\"`` is a quote), keeping each token's column."""
    tokens: list[tuple[str, int]] = []
    start: int | None = None
    state = ""  # "", "constant" or "target"
    for position, char in enumerate(word):
        escaped = position > 0 and word[position - 1] == "\\"
        if char == '"':
            if not state:
                state = "constant" if escaped else "target"
            elif state == "constant" or not escaped:
                state = ""
        if char.isspace() and not state:
            if start is not None:
                tokens.append((word[start:position], start))
                start = None
        elif start is None:
            start = position
    if start is not None:
        tokens.append((word[start:], start))
    return tokens


def parse_probe(word: str) -> ProbeSpec:
    """Parse one probe word.

    Raises:
        ProbeSyntaxError: The word is malformed (the message points at the column).
        FetchArgError: A fetch-arg is malformed.
    """
    tokens = _tokens(word)
    if not tokens:
        raise ProbeSyntaxError("empty probe: write p:TARGET:SYMBOL (for example p:libc:malloc)")
    head, head_column = tokens[0]
    rest = tokens[1:]
    kernel = _KERNEL_HEAD.fullmatch(head)
    if kernel:
        return _parse_kernel(kernel.group(1), kernel.group(2), rest, word, head_column)
    group: str | None = None
    event: str | None = None
    match = _HEAD.fullmatch(head)
    if match:
        kind, after = match.group(1), match.group(2)
        if after is not None and ":" in after:
            place, place_column = after, head_column + len(kind) + 1
        else:
            if not rest:
                raise ProbeSyntaxError(
                    f"missing :LOCATION: write {kind}:TARGET:SYMBOL (for example "
                    f"{kind}:libc:malloc), or {kind}:EVENT TARGET:SYMBOL",
                    word,
                    head_column + len(head),
                )
            if after:
                group, event = _parse_name(after, word, head_column + len(kind) + 1)
            (place, place_column), rest = rest[0], rest[1:]
    else:
        _refuse_unknown_type(head, word, head_column)
        kind, place, place_column = "p", head, head_column

    if place.endswith("%return"):
        if kind == "usdt":
            raise ProbeSyntaxError(
                "%return does not apply to USDT probes", word, place_column + len(place) - 7
            )
        kind = "r"
        place = place[: -len("%return")]
    ref_ctr_offset = None
    ref_match = _REF_CTR.search(place)
    if ref_match:
        try:
            ref_ctr_offset = c_integer(ref_match.group(1))
        except ValueError:
            raise ProbeSyntaxError(f"{ref_match.group(1)!r} is not a number", word,
                                   place_column + ref_match.start() + 1) from None
        place = place[: ref_match.start()]
    target, location = split_place(place, word, place_column, usdt=kind == "usdt")
    if kind == "usdt" and location.count(":") > 1:
        raise ProbeSyntaxError(
            "a USDT place is TARGET:[PROVIDER:]NAME", word, place_column + len(target) + 1
        )
    if kind == "r" and parse_line_location(location) is not None:
        raise ProbeSyntaxError(
            f"a return probe goes on a function, not on a source line ({location}): write "
            "r:TARGET:FUNCTION", word, place_column + len(target) + 1)

    fetchargs: list[FetchArg] = []
    seen: dict[str, int] = {}
    for index, (text, column) in enumerate(rest, start=1):
        arg = parse_fetcharg(
            text,
            index,
            word=word,
            column=column,
            retprobe=kind == "r",
            usdt=kind == "usdt",
        )
        if arg.name in seen:
            raise ProbeSyntaxError(f"field name {arg.name!r} used twice", word, column)
        seen[arg.name] = column
        fetchargs.append(arg)
    return ProbeSpec(
        kind, group, event, target, location, ref_ctr_offset, tuple(fetchargs), word
    )


def _refuse_unknown_type(head: str, word: str, column: int) -> None:
    """A head ``q:X:Y`` is a probe type rawprobe does not know, not a TARGET ``q:X`` (a TARGET
    with a colon is written in double quotes, so it is never mistaken for one)."""
    match = _OTHER_HEAD.fullmatch(head)
    if not match:
        return
    try:
        split_place(match.group(2))
    except ProbeSyntaxError:
        return  # q:ns::f is TARGET q and LOCATION ns::f
    kind = match.group(1)
    hint = ""
    if kind in _KERNEL_TYPES:
        ours = _KERNEL_TYPES[kind]
        hint = (f" (a kernel {kind} probe is written {ours} here)" if ours else
                " (kprobes, fentry and sampling events are not probes rawprobe plants yet)")
    elif kind in _BPFTRACE_TYPES:
        hint = f" (bpftrace's {kind}: is {_BPFTRACE_TYPES[kind]}: here)"
    raise ProbeSyntaxError(
        f"unknown probe type {kind!r}: use p (entry), r (return), usdt, tp or sys{hint}; a TARGET "
        f'that holds a colon is written in double quotes ("{kind}:...":LOCATION)',
        word, column)
def _parse_kernel(kind: str, place: str, rest: list[tuple[str, int]], word: str,
                  column: int) -> ProbeSpec:
    """``tp:GROUP:EVENT [FIELD ...]`` or ``sys:NAME``."""
    place_column = column + len(kind) + 1
    if kind == "sys":
        if not _KERNEL_NAME.fullmatch(place):
            raise ProbeSyntaxError("write sys:NAME, a system call or a glob (sys:openat, "
                                   "sys:open*, sys:*)", word, place_column)
        if rest:
            raise ProbeSyntaxError(
                "a system call probe takes no fields: every argument, the return value and "
                "the duration are recorded (filter them with --filter)", word, rest[0][1])
        return ProbeSpec("sys", None, None, "", place, None, (), word)
    group, colon, event = place.partition(":")
    if not colon or not _KERNEL_NAME.fullmatch(group) or not _KERNEL_NAME.fullmatch(event) or (
            any(char in group for char in "*?[]")):
        raise ProbeSyntaxError("write tp:GROUP:EVENT, as tracefs names the tracepoint (e.g. "
                               "tp:sched:sched_process_exec); 'rawprobe list --tracepoints' "
                               "lists them", word, place_column)
    fields: list[FetchArg] = []
    for text, field_column in rest:
        arg = parse_event_field(text, word=word, column=field_column)
        if any(seen.name == arg.name for seen in fields):
            raise ProbeSyntaxError(f"field name {arg.name!r} used twice", word, field_column)
        fields.append(arg)
    return ProbeSpec("tp", None, None, group, event, None, tuple(fields), word)


def _parse_name(text: str, word: str, column: int) -> tuple[str | None, str | None]:
    group, slash, event = text.rpartition("/")
    if not slash:
        group, event = "", text
    for part, offset in ((group, 0), (event, len(group) + len(slash))):
        if part and not _EVENT_NAME.fullmatch(part):
            raise ProbeSyntaxError(
                f"{part!r} is not a valid event or group name ([A-Za-z_][A-Za-z0-9_]*)",
                word,
                column + offset,
            )
    return group or None, event or None


def default_event_name(spec: ProbeSpec, symbol: str | None, file_offset: int, path: str,
                       symbol_offset: int = 0) -> str:
    """The event name of a probe the user did not name.

    After the symbol (``readline``, ``readline__return`` for a return probe), with the offset
    into it as perf probe writes one (``add_5`` for ``add+5``); a probe at a raw file offset is
    named as the kernel names one (``p_bash_0x1234``), even inside a known function, so that
    two probes in one function never share a name.
    """
    if spec.event:
        return spec.event
    if spec.kernel:
        return spec.location
    if symbol and not is_offset_location(spec.location):
        base = re.sub(r"[^A-Za-z0-9_]", "_", symbol.split("@", 1)[0])
        if base[:1].isdigit():
            base = "_" + base
        if symbol_offset:
            base += f"_{symbol_offset}"
        return base + ("__return" if spec.retprobe else "")
    stem = re.sub(r"[^A-Za-z0-9_]", "_", os.path.basename(path))
    return f"{spec.kind}_{stem}_{file_offset:#x}"
