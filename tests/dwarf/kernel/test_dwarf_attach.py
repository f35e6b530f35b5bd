"""Variables and source lines named in probe words, through ``rawprobe attach``, both backends.

- What the program writes down is what rawprobe records: arguments of each type, struct
  members two pointers deep, strings, an array element, globals, a return value typed from
  DWARF, the locals of a line inside a loop (changing each iteration), an inlined copy.
- perf probe as the oracle: for each expression ``perf probe -D`` accepts, its definition is
  planted in the kernel's own tracer beside rawprobe's probes, the program runs once, and the
  two record the same values, event by event; where perf refuses, rawprobe refuses and says
  why (or, where perf is known to fall short, reads what the program holds).
- The same against libc, with its debug information from libc6-dbg.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from dwarf_programs import (
    ATTACH_BUILDS,
    EXPECTED_VALUES,
    VALUES_PROBES,
    VALUES_PROGRAM,
    Build,
    build,
    marker_line,
)
from helpers import KernelTracer, build_c, run_rawprobe
from test_dwarf_perf import LIBC, Elf, libc_info, perf_definitions, perf_expression

from rawprobe._probe.fetchargs import debug_field_name

BACKENDS = ("bpf", "tracefs")
_ARG = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def builds() -> list[Any]:
    return [pytest.param(spec, id=spec.label) for spec in ATTACH_BUILDS]


def attach(backend: str, words: list[str], command: list[str],
           status: int = 0) -> tuple[list[dict[str, Any]], str]:
    """Run ``rawprobe attach --json`` on ``command``: its events, and its stderr."""
    done = run_rawprobe("attach", "--json", "--backend", backend, *words, "--", *command,
                        timeout=120)
    assert done.returncode == status, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()
              if line.startswith('{"ts_ns"')]
    return events, done.stderr


def same(theirs: object, ours: object) -> bool:
    """A value as printed (by the program or the kernel) and as rawprobe's JSON has it."""
    text = str(theirs)
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if isinstance(ours, str) and not ours.startswith("0x"):
        return text == ours
    try:
        return int(text, 0) == int(str(ours), 0)
    except ValueError:
        return False


def collapsed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive equal rows once: a line whose code starts at two places in one iteration
    (clang -O0 does that for ``total += square(i)``) is hit twice with the same values."""
    return [row for index, row in enumerate(rows) if index == 0 or rows[index - 1] != row]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", builds())
def test_values_the_program_writes(spec: Build, backend: str, tmp_path: Path) -> None:
    path = build(spec, VALUES_PROGRAM, name="values")
    loop = marker_line("loop", VALUES_PROGRAM)
    words = [word.format(path=path, loop=loop) for word in VALUES_PROBES]
    written = tmp_path / "written"
    events, _ = attach(backend, words, [str(path), str(written), "xyzzy"])
    expected: dict[str, list[dict[str, str]]] = {}
    for line in written.read_text().splitlines():
        event, _, rest = line.partition(" ")
        expected.setdefault(event, []).append(dict(_ARG.findall(rest)))
    recorded: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        recorded.setdefault(event["event"], []).append(event["args"])
    assert set(recorded) == set(expected), (spec.label, backend)
    for event, rows in expected.items():
        ours = collapsed(recorded[event]) if event in ("loop", "square") else recorded[event]
        assert len(ours) == len(rows), (event, ours, rows)
        for row, got in zip(rows, ours, strict=True):
            assert set(got) == set(row), (event, got)
            for name, value in row.items():
                assert same(value, got[name]), (spec.label, backend, event, name, value, got)
    # --json types follow the debug information: signed and unsigned numbers, a char as a
    # number, a pointer as hex, strings as strings; $retval signed from int, not x64.
    (scalars,) = recorded["scalars"]
    assert scalars["c"] < 0 and scalars["s"] < 0 and scalars["l"] < 0 < scalars["u"]
    assert isinstance(scalars["p"], str) and scalars["p"].startswith("0x")
    assert recorded["add__return"] == [{"arg1": -2}]
    assert recorded["deep"][0]["name"] == "hello"
    assert len(recorded["loop"]) >= 5 and [row["i"] for row in collapsed(recorded["loop"])] \
        == [0, 1, 2, 3, 4]


# -- perf probe as the oracle ------------------------------------------------------------

# Expressions perf refuses, and why rawprobe must refuse them too.
REFUSED = {
    "add": {"c": "no variable 'c'", "a->x": "not a struct", "a[1]": "not an array",
            "a.x": "not a struct", "a:string": "not a string"},
    "deep": {"o->nosuch": "has no member 'nosuch'", "o.tag": "is a pointer",
             "o->in->x->y": "not a struct", "o->in:string": "not a string"},
}


def perf_fetchargs(path: Path, elf: Elf, function: str,
                   expressions: list[str]) -> tuple[int | None, dict[str, str]]:
    """perf's probe offset and ``FETCHARG:TYPE`` for each expression it accepts (globals
    written as the ``@+N`` the uprobe tracer takes)."""
    definitions, _ = perf_definitions(str(path), " ".join(
        [function, *(perf_expression(e) for e in expressions)]))
    if definitions:
        ((offset, args),) = definitions
        pairs = list(zip(expressions, args, strict=True))
    else:
        offset, pairs = None, []
        for expression in expressions:
            found, _ = perf_definitions(str(path), f"{function} {perf_expression(expression)}")
            if found:
                ((offset, (arg,)),) = found
                pairs.append((expression, arg))
    if offset is None:
        return None, {}
    address = next(vaddr + offset - segment_offset for vaddr, size, segment_offset in elf.segments
                   if segment_offset <= offset < segment_offset + size)
    return offset, {expression: f"{elf.globals_as_rawprobe(fetch, address)}:{kind}".rstrip(":")
                    for expression, (_, fetch, kind) in pairs}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", builds())
def test_values_match_perfs_definitions(spec: Build, backend: str) -> None:
    path = build(spec)
    elf = Elf(str(path))
    words, definitions, theirs = [], [], {}
    for function, values in EXPECTED_VALUES.items():
        expressions = list(values)
        words.append(f"p:{function} {path}:{function} " + " ".join(
            f"v{index}={expression}" for index, expression in enumerate(expressions)))
        offset, fetchargs = perf_fetchargs(path, elf, function, expressions)
        if offset is None:
            continue
        names = {f"w{index}": expression for index, expression in enumerate(expressions)
                 if expression in fetchargs}
        definitions.append(f"p:pf_{function} {path}:{offset:#x} " + " ".join(
            f"{name}={fetchargs[expression]}" for name, expression in names.items()))
        theirs[function] = names
    assert theirs, "perf accepted nothing"
    with KernelTracer(definitions) as tracer:
        events, _ = attach(backend, words, [str(path)])
        records = tracer.records()
    pids = {event["pid"] for event in events}
    ours: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        ours.setdefault(event["event"], []).append(event["args"])
    kernel: dict[str, list[dict[str, str]]] = {}
    for pid, event, arguments in records:
        if pid in pids:
            kernel.setdefault(event[len("pf_"):], []).append(dict(_ARG.findall(arguments)))
    compared = 0
    for function, values in EXPECTED_VALUES.items():
        rows = ours[function]
        assert len(rows) == 1, (function, rows)
        for index, (expression, value) in enumerate(values.items()):
            # What the program holds, read by rawprobe whatever perf makes of it.
            assert same(value, rows[0][f"v{index}"]), (spec.label, function, expression, rows)
        if function not in theirs:
            continue
        assert len(kernel.get(function, [])) == len(rows), (function, kernel.get(function))
        for their_row, our_row in zip(kernel[function], rows, strict=True):
            for name, expression in theirs[function].items():
                index = list(values).index(expression)
                if not same(their_row[name], our_row[f"v{index}"]):
                    # perf takes DW_AT_bit_offset, counted from the most significant bit,
                    # for the kernel's offset from the least significant one.
                    assert "->" in expression and expression.split("->")[-1] in (
                        "low", "mid", "neg", "flag"), (spec.label, function, expression,
                                                       their_row[name], our_row)
                    continue
                compared += 1
    assert compared >= 15, compared


@pytest.mark.parametrize("spec", builds())
def test_what_perf_refuses_rawprobe_refuses(spec: Build) -> None:
    path = build(spec)
    for function, expressions in REFUSED.items():
        for expression, reason in expressions.items():
            definitions, _ = perf_definitions(str(path), f"{function} {expression}")
            assert not definitions, (function, expression, definitions)
            done = run_rawprobe("attach", f"p:{path}:{function} {expression}", "--",
                                "/bin/true", timeout=60)
            assert done.returncode == 2, (function, expression, done.stderr)
            assert reason in done.stderr and "Traceback" not in done.stderr, done.stderr


# -- libc, with libc6-dbg --------------------------------------------------------------

LIBC_CALLS = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char *block = malloc(12345);
    const char *value = getenv("RAWPROBE_PROBED_VARIABLE");
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    FILE *file = fopen(argv[1], "r");
    char line[77];
    char *got = fgets(line, sizeof line, file);
    printf("%d %d %d\n", block != 0, value != 0, fd >= 0 && got != 0);
    return 0;
}
"""

# The probed function, its expressions (from test_dwarf_perf's LIBC_EXPRESSIONS), and which
# of its calls are the program's own: (expression, the value that says so; None: the file
# the program opens).
LIBC_PROBES: dict[str, tuple[list[str], tuple[str, int | str | None]]] = {
    "malloc": (["bytes"], ("bytes", 12345)),
    "getenv": (["name:string"], ("name:string", "RAWPROBE_PROBED_VARIABLE")),
    "__libc_open64": (["file:string", "oflag"], ("file:string", None)),
    "_IO_fgets": (["buf", "n", "fp->_flags", "fp->_chain->_fileno", "fp->_IO_read_ptr"],
                  ("n", 77)),
}


def field(expression: str) -> str:
    """The field an unnamed expression gets (``_fileno`` for ``fp->_chain->_fileno``)."""
    return debug_field_name(expression.split(":")[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_libc_values_match_perfs_definitions(backend: str, tmp_path: Path) -> None:
    info = libc_info()
    program = build_c(LIBC_CALLS, name="libc_calls", flags=("-O1", "-g"))
    probed_file = tmp_path / "probed-file"
    probed_file.write_text("one line\n")
    elf = Elf(LIBC)
    elf.symbols = Elf(info.debug_path).symbols
    words, definitions, names = [], [], {}
    for function, (expressions, _) in LIBC_PROBES.items():
        words.append(f"p:{function} libc:{function} " + " ".join(expressions))
        (instance,) = info.functions(function, inlined=False)  # perf knows DWARF names
        offset, fetchargs = perf_fetchargs(Path(LIBC), elf, instance.name, expressions)
        assert offset is not None and set(fetchargs) == set(expressions), (function, fetchargs)
        names[function] = {f"w{index}": expression
                           for index, expression in enumerate(expressions)}
        definitions.append(f"p:pf_{function} {LIBC}:{offset:#x} " + " ".join(
            f"{name}={fetchargs[expression]}" for name, expression in names[function].items()))
    with KernelTracer(definitions, comm=program.name) as tracer:
        events, _ = attach(backend, words, [str(program), str(probed_file)])
        records = tracer.records()
    pids = {event["pid"] for event in events}
    for function, (_, (key, wanted)) in LIBC_PROBES.items():
        mine = str(probed_file) if wanted is None else wanted
        ours = [event["args"] for event in events
                if event["event"] == function and same(mine, event["args"][field(key)])]
        their_key = next(name for name, e in names[function].items() if e == key)
        theirs = [values for pid, event, arguments in records
                  if pid in pids and event == f"pf_{function}"
                  and same((values := dict(_ARG.findall(arguments)))[their_key], mine)]
        assert ours and len(ours) == len(theirs), (function, ours, theirs)
        for our_row, their_row in zip(ours, theirs, strict=True):
            for name, expression in names[function].items():
                assert same(their_row[name], our_row[field(expression)]), (
                    function, expression, their_row, our_row)
