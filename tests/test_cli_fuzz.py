"""Fuzzing what a user (or a file) can hand rawprobe: no input may end in an internal error.

Probe words, filters, options and damaged ELF files go through the same code a run takes, up
to the point where the kernel would be asked to plant something: parsing, target lookup,
symbol and USDT resolution, the safety checks, the BPF configuration (``struct rp_probe``)
and the tracefs backend's rendering. Every failure must be a :class:`rawprobe.RawprobeError`
(a message for the user); anything else is a bug. The command line itself is fuzzed through
:func:`rawprobe.cli.main`, whose "internal error" line is what a user would see.

The bulk comes from a seeded grammar (:mod:`fuzz_grammar`; ``RAWPROBE_FUZZ_SEED`` picks
another seed), fast enough for the counts asserted here: 20,000 probe words, 5,000 filters,
2,000 damaged ELF files and 1,000 command lines. Hypothesis explores the same grammar in fewer
examples, and shrinks what it finds.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fuzz_grammar import Grammar, hot_offsets, mutate_elf
from helpers import ADD_SOURCE, build_c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe import RawprobeError
from rawprobe._probe.aggregations import AggregationSpec, parse_hist

USDT_SOURCE = r"""
#include <sys/sdt.h>
#include <string.h>
struct point { int x, y; };
__attribute__((noinline)) int work(int x, const char *name, struct point *p) {
    DTRACE_PROBE3(demo, tick, x, name, p);
    STAP_PROBE2(demo, tock, p->x, (long)strlen(name));
    return x + p->y;
}
int main(int argc, char **argv) {
    struct point p = {1, 2};
    int s = 0;
    for (int i = 0; i < 3; i++) s += work(i + argc, argv[0], &p);
    return s == 0;
}
"""

_COUNTS: Counter[str] = Counter()
_SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}


@pytest.fixture(scope="module")
def programs() -> dict[str, str]:
    return {
        "add": str(build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))),
        # No -g: debug sections only slow the ELF fuzzing down (the DWARF reader is not on
        # these paths).
        "usdt": str(build_c(USDT_SOURCE, name="usdt", flags=("-O1",))),
    }


@pytest.fixture(autouse=True, scope="module")
def _no_disk_cache() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAWPROBE_CACHE_DIR", "")
        patch.delenv("RAWPROBE_DEBUG_ROOT", raising=False)
        yield


# -- the probe language, as a grammar with the odd corner -------------------------------------

_NUMBERS = st.one_of(
    st.integers(0, 2**16).map(str),
    st.integers(0, 2**70).map(hex),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "08", "0x", "-0", "00", "0X1f", "18446744073709551615",
                     "18446744073709551616", "9223372036854775808", "-9223372036854775809"]),
)


_SIMPLE_SOURCES = st.one_of(
    st.sampled_from(["%di", "%si", "%dx", "%cx", "%r8", "%ax", "%sp", "%ip", "%rip", "%nope",
                     "%", "$arg1", "$arg6", "$arg7", "$arg0", "$retval", "$stack", "$stack0",
                     "$stack2048", "$stack2049", "$comm", "$nope", "arg0", "arg5", "arg6",
                     "retval", '\\"text"', '\\"', "\\", "@", "@+", "x", "common_pid"]),
    _NUMBERS.map(lambda n: "@" + n.lstrip("-")),
    _NUMBERS.map(lambda n: "@+" + n.lstrip("-")),
    _NUMBERS.map(lambda n: "\\" + n),
    _NUMBERS.map(lambda n: "$stack" + n.lstrip("-")),
    _NUMBERS.map(lambda n: "$arg" + n.lstrip("-")),
)
_SOURCES = st.recursive(_SIMPLE_SOURCES, lambda inner: st.builds(
    lambda sign, unsigned, offset, source, close: f"{sign}{unsigned}{offset}({source}{close}",
    st.sampled_from("+-"), st.sampled_from(["", "u"]), _NUMBERS.map(lambda n: n.lstrip("-")),
    inner, st.sampled_from([")", ")", "", "))"])), max_leaves=10)


_TYPES = st.one_of(
    st.sampled_from(["", ":s8", ":u16", ":x32", ":s64", ":x64", ":u64", ":char", ":string",
                     ":ustring", ":str", ":symbol", ":b3@2/8", ":b0@0/8", ":b9@0/8", ":b1@63/64",
                     ":u8[3]", ":string[2]", ":char[64]", ":u8[0]", ":u8[65]", ":s31", ":symstr",
                     ":%pd", ":", ":x8[1]", ":str[64]"]),
    st.text(alphabet="sux0123456789b@/[]:", max_size=7).map(lambda t: ":" + t),
)
_FETCHARGS = st.builds(
    lambda name, source, kind: f"{name}{source}{kind}",
    st.sampled_from(["", "", "a=", "b=", "x1=", "1bad=", "=", "a-b=", "pid="]),
    _SOURCES, _TYPES)
_HEADS = st.sampled_from(["p:", "r:", "usdt:", "", "p:ev ", "r:g/ev ", "p ", "r ", "usdt ",
                          "q:", "uprobe:", "p:1bad ", "tp:", "p:a/b/c ", "p:ev", "usdt:n "])
_LOCATIONS = st.one_of(
    st.sampled_from(["add", "main", "work", "add+4", "add+1", "add+0x10", "work+4", "main+3",
                     "add+99999999999999999999", "0x1149", "0x0", "0x1", "0xffffffffffffffffffff",
                     "a*", "*", "[", "ma?n", "demo:tick", "tick", "demo:tock", "t*", "nosuch",
                     "ns::f", "f[abi:cxx11]", "add@GLIBC_2.2.5", "add@@V", "", ":", "::"]),
    st.text(alphabet="admintw+0x1*?:[]@%()", max_size=10),
)
_SUFFIXES = st.sampled_from(["", "", "%return", "(0x10)", "(99999999999999999999)", "(08)",
                             "%return(0x4)"])


def _targets(programs: dict[str, str]) -> st.SearchStrategy[str]:
    return st.sampled_from([
        programs["add"], programs["usdt"], programs["add"], programs["usdt"],
        "./nonexistent", "/proc/self/mem", "/dev/zero", "/", "/etc/passwd", "libnosuch",
        f'"{programs["add"]}"', '"unterminated', '""', "", "a b",
    ])


def _words(programs: dict[str, str]) -> st.SearchStrategy[str]:
    grammar = st.builds(
        lambda head, target, location, suffix, args: f"{head}{target}:{location}{suffix}"
        + "".join(" " + arg for arg in args),
        _HEADS, _targets(programs), _LOCATIONS, _SUFFIXES, st.lists(_FETCHARGS, max_size=4))
    return st.one_of(grammar, grammar, _mutated(grammar), st.text(max_size=40))


def _mutated(words: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A word with characters inserted, removed or replaced: the typos of a real user."""
    alphabet = " :%$@+-()[]\\\"=*?/0123456789abcdefxsu"
    edit = st.tuples(st.integers(0, 200), st.sampled_from(["insert", "delete", "replace"]),
                     st.sampled_from(alphabet))

    def apply(word: str, edits: list[tuple[int, str, str]]) -> str:
        text = list(word)
        for position, action, char in edits:
            at = position % (len(text) + 1)
            if action == "insert":
                text.insert(at, char)
            elif text and at < len(text):
                if action == "delete":
                    del text[at]
                else:
                    text[at] = char
        return "".join(text)

    return st.builds(apply, words, st.lists(edit, min_size=1, max_size=4))


# -- filters ----------------------------------------------------------------------------------

_FIELD_NAMES = st.sampled_from(["a", "b", "s", "c", "arr", "pid", "tid", "cpu", "comm", "nope",
                                "_x", "x1"])
_OPERATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&", "~", "!~", "=", "<>", ""])
_LITERALS = st.one_of(
    _NUMBERS,
    st.text(alphabet='abc*é\\"xntq0?', max_size=8).map(lambda t: f'"{t}"'),
    st.sampled_from(['"\\x?"', '"\\x41"', '"\\xff"', '"\\q"', '"a*"', '"*a"', '"' + "x" * 40 + '"',
                     '"', '""', "x"]),
)
_COMPARISONS = st.builds(lambda n, o, v: f"{n} {o} {v}", _FIELD_NAMES, _OPERATORS, _LITERALS)


_FILTER_EXPRS = st.recursive(_COMPARISONS, lambda inner: st.one_of(
    st.builds(lambda x: f"!{x}", inner),
    st.builds(lambda x: f"({x})", inner),
    st.builds(lambda x, op, y: f"{x} {op} {y}", inner, st.sampled_from(["&&", "||", "&"]), inner),
), max_leaves=12)


_FILTERS = st.one_of(
    _FILTER_EXPRS,
    _mutated(_FILTER_EXPRS),
    st.integers(1, 300).map(lambda n: "(" * n + "a == 1" + ")" * n),
    st.integers(1, 300).map(lambda n: "!" * n + "a == 1"),
    st.integers(1, 300).map(lambda n: " && ".join(["a == 1"] * n)),
    st.text(alphabet='abs()!&|=<>~"\\0x1 ', max_size=30),
)

# -- running them -----------------------------------------------------------------------------


def _seed() -> int:
    return int(os.environ.get("RAWPROBE_FUZZ_SEED", "14"))


def _options(rng: random.Random) -> dict[str, object]:
    kind = rng.choice(["stream", "stream", "stream", "count", "hist", "latency"])
    by = rng.choice([None, None, "comm", "pid", "a", "s", "nope"])
    aggregation = None
    if kind == "count":
        aggregation = AggregationSpec("count", by=by, stack=rng.random() < 0.2)
    elif kind in ("hist", "latency"):
        text = "latency" if kind == "latency" else rng.choice(
            ["a", "s", "a:linear:0:4096:256", "a:linear:0:1:0", "nope", "x:linear:5:1:1"])
        with contextlib.suppress(RawprobeError):
            aggregation = AggregationSpec("hist", by=by, hist=parse_hist(text))
    return {
        "aggregation": aggregation,
        "stack": rng.random() < 0.2,
        "string_size": rng.choice([1, 2, 64, 256, 4096, 65536]),
        "force": rng.random() < 0.3,
        "pids": rng.choice([(), (), (), (os.getpid(),)]),
    }


def _plan(word: str, filter_text: str | None, options: dict[str, object]) -> None:
    """Plan ``word`` as a run would, and render it for the tracefs backend; only
    RawprobeError may come out."""
    from rawprobe._plan.planner import Planner
    from rawprobe._tracefs._render import render_event

    planner = Planner(**options)  # type: ignore[arg-type]
    try:
        planner.add(word, filter_text)
        plan = planner.plan()
    except RawprobeError:
        return
    _COUNTS["planned"] += 1
    for event in plan.events:
        with contextlib.suppress(RawprobeError):
            render_event(event)


def test_probe_words(programs: dict[str, str]) -> None:
    grammar = Grammar(_seed(), [programs["add"], programs["usdt"]])
    for _ in range(20_000):
        word = grammar.word()
        filter_text = grammar.filter() if grammar.rng.random() < 0.2 else None
        options = _options(grammar.rng)
        try:
            _plan(word, filter_text, options)
        except Exception as error:
            raise AssertionError(f"internal error on {word!r} --filter {filter_text!r} "
                                 f"{options}: {error!r}") from error
        _COUNTS["words"] += 1
    assert _COUNTS["words"] >= 20_000
    assert _COUNTS["planned"] >= 1_500, _COUNTS  # words that went all the way


def test_probe_words_hypothesis(programs: dict[str, str]) -> None:
    @settings(max_examples=300, **_SETTINGS)  # type: ignore[call-overload]
    @given(_words(programs), st.one_of(st.none(), _FILTERS), st.randoms(use_true_random=False))
    def run(word: str, filter_text: str | None, rng: random.Random) -> None:
        _plan(word, filter_text, _options(rng))

    run()


FILTER_WORD = "p:./x:f a=%di:s32 b=%si:u64 s=+0(%dx):string arr=+0(%cx):u8[3] c=+0(%r8):char"


def _filter_checker() -> Callable[[str], None]:
    from rawprobe._plan.compile import compile_fetchargs
    from rawprobe._plan.events import Event, RecordLayout
    from rawprobe._plan.filters import compile_filter
    from rawprobe._probe.filters import evaluate_filter, parse_filter
    from rawprobe._probe.words import parse_probe

    compiled = compile_fetchargs(parse_probe(FILTER_WORD).fetchargs, word=FILTER_WORD,
                                 string_size=32)
    layout = RecordLayout("f", compiled)
    samples = [
        Event.make(layout, 0, 1, 2, 0, b"main", (1, 2, "text", (1, 2, 3), "c")),
        Event.make(layout, 0, 1, 2, 0, b"main", (None, None, None, None, None)),
    ]

    def check(text: str) -> None:
        try:
            expr = parse_filter(text)
            compile_filter(expr, compiled, text)
        except RawprobeError:
            return  # what the BPF side refuses, the tracefs backend refuses too
        for sample in samples:  # the tracefs backend evaluates filters in user space
            evaluate_filter(expr, sample)

    return check


def test_filters() -> None:
    check = _filter_checker()
    grammar = Grammar(_seed(), [])
    for _ in range(5_000):
        text = grammar.filter()
        try:
            check(text)
        except Exception as error:
            raise AssertionError(f"internal error on --filter {text!r}: {error!r}") from error
        _COUNTS["filters"] += 1
    assert _COUNTS["filters"] >= 5_000


def test_filters_hypothesis() -> None:
    check = _filter_checker()

    @settings(max_examples=300, **_SETTINGS)  # type: ignore[call-overload]
    @given(_FILTERS)
    def run(text: str) -> None:
        check(text)

    run()


# -- damaged files ----------------------------------------------------------------------------


def _exercise_file(path: str, step: int) -> None:
    from rawprobe._plan.planner import Planner
    from rawprobe._symbols import clear_memory, list_functions
    from rawprobe._usdt import list_usdt_probes

    clear_memory()
    actions = [
        lambda: list_functions(path, use_cache=False),
        lambda: list_usdt_probes(path),
        # One word per file, in turn: an offset into a function, every USDT argument, a glob
        # of return probes, a raw offset.
        lambda: Planner().add([f"p:{path}:work+4 x=%di:s32", f"usdt:{path}:demo:tick",
                               f"r:{path}:[mw]*", f"p:{path}:0x1139"][step % 4]),
    ]
    for action in actions:
        try:
            action()
        except RawprobeError:
            continue
        except Exception as error:
            raise AssertionError(f"internal error on a damaged file ({path}): {error!r}") \
                from error


def test_mutated_elf_files(programs: dict[str, str], tmp_path: Path) -> None:
    original = Path(programs["usdt"]).read_bytes()
    hot = hot_offsets(original)
    rng = random.Random(_seed())
    for step in range(2_000):
        path = tmp_path / "damaged"
        path.write_bytes(mutate_elf(rng, original, hot))
        try:
            _exercise_file(str(path), step)
        except AssertionError:
            kept = tmp_path.parent / f"rawprobe-fuzz-damaged-{step}"
            path.rename(kept)  # for the report
            raise
        _COUNTS["elf"] += 1
    assert _COUNTS["elf"] >= 2_000


def _section(data: bytes, wanted: str) -> int:
    """The file offset of section header ``wanted``."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    names = struct.unpack_from("<Q", data, shoff + 64 * shstrndx + 24)[0]
    for index in range(shnum):
        header = shoff + 64 * index
        name_at = names + struct.unpack_from("<I", data, header)[0]
        if data[name_at:data.index(b"\0", name_at)].decode() == wanted:
            return header
    raise AssertionError(wanted)


def test_damage_the_report_named(programs: dict[str, str], tmp_path: Path) -> None:
    original = Path(programs["usdt"]).read_bytes()
    cases = {}
    damaged = bytearray(original)
    struct.pack_into("<Q", damaged, 0x28, 1)  # e_shoff = 1
    cases["shoff"] = damaged
    damaged = bytearray(original)
    struct.pack_into("<Q", damaged, _section(original, ".note.stapsdt") + 32, 1 << 62)  # sh_size
    cases["stapsdt"] = damaged
    damaged = bytearray(original)
    symtab = _section(original, ".symtab")
    symbols, size = struct.unpack_from("<QQ", original, symtab + 24)
    strings = struct.unpack_from("<Q", original, _section(original, ".strtab") + 24)[0]
    for entry in range(symbols, symbols + size, 24):
        name_at = strings + struct.unpack_from("<I", original, entry)[0]
        if original[name_at:original.index(b"\0", name_at)] == b"work":
            struct.pack_into("<Q", damaged, entry + 16, (1 << 63) - 1)  # st_size
    cases["st_size"] = damaged
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(bytes(data))
        for step in range(4):
            _exercise_file(str(path), step)


# -- the command line -------------------------------------------------------------------------


class _Planted(BaseException):
    """Raised where the kernel would be asked to load and plant (the fuzz stops there)."""


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import rawprobe
    import rawprobe._tracer
    from rawprobe._host import privileges
    from rawprobe._tracefs._render import render_event

    def open_session(plan: object, *_args: object, **_kwargs: object) -> None:
        for event in plan.events:  # type: ignore[attr-defined]
            with contextlib.suppress(RawprobeError):
                render_event(event)
        raise _Planted

    monkeypatch.setattr(rawprobe._tracer, "open_session", open_session)
    monkeypatch.setattr(privileges, "check_tracing_privileges", lambda *a, **k: None)
    monkeypatch.setattr(rawprobe, "check_privileges", lambda *a, **k: None, raising=False)
    yield


def run_cli(argv: list[str]) -> tuple[int | str, str]:
    """``rawprobe ARGV`` in this process: (exit status or "planted", stderr)."""
    from rawprobe.cli import main

    err, out = io.StringIO(), io.StringIO()
    status: int | str
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse
            status = exit_.code if isinstance(exit_.code, int) else 2
        except _Planted:
            status = "planted"
    return status, err.getvalue()


_OPTIONS = [["--json"], ["--count"], ["--stack"], ["--force"], ["--folded"], ["--usdt"],
            ["--backend", "tracefs"], ["--backend", "bpf"], ["--backend", "x"], ["-v"]]
_VALUED = ["-p", "--duration", "-n", "--hist", "--by", "--interval", "--string-size",
           "--ring-size", "--filter"]
_VALUES = ["abc", "0", "-1", "1", "0x10", "1e3", "nan", "inf", "", "4096", "1.5", "comm",
           "latency", "a:linear", "a:linear:0:10:1", "99999999999999999999", "-5e-324"]


def test_command_lines(programs: dict[str, str], cli: None) -> None:
    grammar = Grammar(_seed(), [programs["add"], programs["usdt"]])
    rng = grammar.rng
    for _ in range(1_000):
        command = rng.choice(["attach", "attach", "attach", "list", "resolve"])
        argv = [command]
        for _ in range(rng.randrange(4)):
            if rng.random() < 0.5:
                argv += rng.choice(_OPTIONS)
            else:
                option = rng.choice(_VALUED)
                value = grammar.filter() if option == "--filter" else rng.choice(_VALUES)
                argv += [option, value]
        word = grammar.word()
        if command == "attach":
            argv += [word] + [grammar.word() for _ in range(rng.randrange(2))]
        else:
            argv += [word.split(" ", 1)[0].split(":", 1)[-1] or "x"]
        status, stderr = run_cli(argv)
        assert "internal error" not in stderr and "Traceback" not in stderr, (argv, stderr)
        assert status in (0, 1, 2, "planted"), (argv, status, stderr)
        _COUNTS["command lines"] += 1
    assert _COUNTS["command lines"] >= 1_000


def test_known_internal_errors_are_clean(programs: dict[str, str], cli: None) -> None:
    """The inputs that once ended in "internal error" or a misleading message."""
    add = programs["add"]
    cases = [
        (["attach", f"q:{add}:add"], "unknown probe type 'q'"),
        (["attach", "-p", "abc", f"p:{add}:add"], "'abc' is not a whole number"),
        (["list", "-p", "abc", add], "'abc' is not a whole number"),
        (["attach", f"p:{add}:add x=@99999999999999999999"], "does not fit in 64 bits"),
        (["attach", f"p:{add}:add x=+99999999999999999999(%di)"], "does not fit in 64 bits"),
        (["attach", f"p:{add}:add x=\\99999999999999999999"], "does not fit in 64 bits"),
        (["attach", f"p:{add}:add x=$stack99999999999999999999"], "at most $stack2048"),
        (["attach", "--filter", "(" * 500 + "a == 1" + ")" * 500, f"p:{add}:add a=%di"],
         "nested more than"),
        (["attach", "--filter", "!" * 5000 + "a == 1", f"p:{add}:add a=%di"], "nested more than"),
        (["attach", "--filter", " && ".join(["a == 1"] * 2000), f"p:{add}:add a=%di"],
         "more than 128 comparisons"),
        (["attach", "--filter", 'c ~ "\\x?"', f"p:{add}:add c=+0(%di):string"],
         "unknown escape \\x"),
        (["attach", "p:/proc/self/mem:0x10"], "not an ELF file"),
        (["list", "/proc/self/mem"], "not an ELF file"),
    ]
    for argv, needle in cases:
        status, stderr = run_cli(argv)
        assert status == 2, (argv, status, stderr)
        assert needle in stderr, (argv, stderr)
        assert "internal error" not in stderr
    # The return half of a latency measurement carried the entry's fetch-args to the tracefs
    # backend, which could not render them.
    status, stderr = run_cli(["attach", "--backend", "tracefs", "--hist", "latency",
                              f"p:{add}:add a=%di:s32"])
    assert status == "planted", stderr


def test_write_errors_are_a_clean_failure(programs: dict[str, str]) -> None:
    import subprocess
    import sys

    # stdout on a full device: the listing cannot be written.
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "rawprobe", "list", programs["add"]],
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ("rawprobe: error: cannot write the output: No space left on "
                             "device\n"), result.stderr
