"""The probe-word parser: both head spellings, places, fetch-args, and its errors."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe import ProbeSyntaxError, RawprobeError
from rawprobe._probe.fetchargs import DebugVariable, Register
from rawprobe._probe.words import LineLocation, default_event_name, parse_probe, split_place


@pytest.mark.parametrize(
    ("word", "kind", "group", "event", "target", "location"),
    [
        ("p:./main:add", "p", None, None, "./main", "add"),
        ("r:libc:malloc", "r", None, None, "libc", "malloc"),
        ("p:/bin/bash:readline", "p", None, None, "/bin/bash", "readline"),
        ("p:myev /bin/bash:readline", "p", None, "myev", "/bin/bash", "readline"),
        ("p:grp/myev /bin/bash:readline", "p", "grp", "myev", "/bin/bash", "readline"),
        ("p /bin/bash:readline", "p", None, None, "/bin/bash", "readline"),
        ("r /bin/bash:readline", "r", None, None, "/bin/bash", "readline"),
        ("/bin/bash:readline", "p", None, None, "/bin/bash", "readline"),
        ("/bin/bash:readline%return", "r", None, None, "/bin/bash", "readline"),
        ("p:./x:0x1139", "p", None, None, "./x", "0x1139"),
        ("p:./x:add+4", "p", None, None, "./x", "add+4"),
        ("p:libc:mem*", "p", None, None, "libc", "mem*"),
        ("p:./prog:ns::func", "p", None, None, "./prog", "ns::func"),
        ("usdt:/usr/bin/python3.11:python:function__entry", "usdt", None, None,
         "/usr/bin/python3.11", "python:function__entry"),
        ("usdt:myev ./app:mark", "usdt", None, "myev", "./app", "mark"),
    ],
)
def test_heads_and_places(
    word: str, kind: str, group: str | None, event: str | None, target: str, location: str
) -> None:
    spec = parse_probe(word)
    assert (spec.kind, spec.group, spec.event, spec.target, spec.location) == (
        kind, group, event, target, location
    )


def test_kernel_and_short_spellings_mean_the_same() -> None:
    short = parse_probe("p:./main:add a=%di:s32 b=%si:s32")
    kernel = parse_probe("p ./main:add a=%di:s32 b=%si:s32")
    assert [(a.name, a.source, a.type) for a in short.fetchargs] == [
        (a.name, a.source, a.type) for a in kernel.fetchargs
    ]


def test_fetchargs_and_aliases() -> None:
    spec = parse_probe("p:./main:add a=%di:s32 arg1 x=arg1:u64")
    assert [a.name for a in spec.fetchargs] == ["a", "arg2", "x"]
    assert spec.fetchargs[0].source == Register("di")
    # arg1 is the bpftrace alias of the second ABI argument register (0-based).
    assert spec.fetchargs[1].source == Register("si")
    assert spec.fetchargs[2].type.name == "u64"
    ret = parse_probe("r:./main:add ret=retval:s32 raw=$retval")
    # An untyped $retval is typed from the debug information where there is some.
    assert ret.fetchargs[0].source == Register("ax") == ret.fetchargs[1].source.fallback  # type: ignore[union-attr]
    assert ret.fetchargs[1].type.name == "x64"  # the kernel's default type


def test_ref_ctr_offset_suffix() -> None:
    spec = parse_probe("p:./x:0x1139(0x4010)")
    assert spec.ref_ctr_offset == 0x4010 and spec.location == "0x1139"


@pytest.mark.parametrize(
    ("word", "message", "column"),
    [
        ("p:", "missing :LOCATION", 2),
        ("p:./main", "missing :LOCATION", 8),
        ("p:bad-name ./x:y", "not a valid event or group name", 2),
        ("p:./main:add a=%di a=%si", "used twice", 19),
        ("p:./main:", "missing LOCATION", 9),
        ("p:./main:add a=%zz", "unknown register", 15),
        ("p:./main:add a=$retval", "only available on return probes", 15),
        ("r:./main:add a=$arg1", "return probe", 15),
        ("p:./main:add a=%di:s12", "unknown type", 19),
        ("p:./main:add a=+0(%di", "missing ')'", 21),
        ("p:./main:add a=arg6", "only the 6 register arguments", 15),
        ("usdt:./x:a:b:c", "PROVIDER", 9),
        ("p:./main:add a=" + "+0(" * 9 + "%di" + ")" * 9, "nested too deep", 39),
    ],
)
def test_errors_point_at_the_column(word: str, message: str, column: int) -> None:
    with pytest.raises(ProbeSyntaxError) as info:
        parse_probe(word)
    assert message in info.value.message
    assert info.value.column == column
    assert info.value.exit_status == 2


def test_split_place_keeps_cxx_scopes() -> None:
    assert split_place("./prog:ns::Class::method") == ("./prog", "ns::Class::method")
    with pytest.raises(ProbeSyntaxError):
        split_place("no-colon")


def test_default_event_names() -> None:
    entry = parse_probe("p:./main:add")
    ret = parse_probe("r:./main:add")
    named = parse_probe("p:mine ./main:add")
    assert default_event_name(entry, "add", 0x1139, "/x/main") == "add"
    assert default_event_name(ret, "add", 0x1139, "/x/main") == "add__return"
    assert default_event_name(named, "add", 0x1139, "/x/main") == "mine"
    assert default_event_name(entry, None, 0x1139, "/x/main") == "p_main_0x1139"
    assert default_event_name(entry, "malloc@@GLIBC_2.2.5", 0, "/x") == "malloc"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="pru:/. %$@+-()\\\"=abcdisx0123456789[]*", max_size=40))
def test_fuzz_only_rawprobe_errors(word: str) -> None:
    with contextlib.suppress(RawprobeError):
        parse_probe(word)


def test_numbers_read_as_c_reads_them() -> None:
    # The kernel reads fetch-arg numbers with base 0: 0x hex, a leading 0 octal.
    spec = parse_probe("p:./x:f a=+010(%di):u8 b=+0x10(%di):u8 c=\\-010:s32 d=@017:u8")
    offsets = [arg.source for arg in spec.fetchargs]
    assert offsets[0].offset == 8 and offsets[1].offset == 16  # type: ignore[union-attr]
    assert offsets[2].value == -8  # type: ignore[union-attr]
    assert offsets[3].address == 15  # type: ignore[union-attr]
    with pytest.raises(ProbeSyntaxError, match="'08' is not a number"):
        parse_probe("p:./x:f a=+08(%di)")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789xX+-()%di:u8s@\\$ab=", max_size=30))
def test_fuzz_fetchargs_only_rawprobe_errors(text: str) -> None:
    with contextlib.suppress(RawprobeError):
        parse_probe("p:./x:f " + text)


# -- names from the debug information, and source lines ------------------------------------


@pytest.mark.parametrize(("text", "name", "expression", "cast"), [
    ("a", "a", "a", None),
    ("o->in->x", "x", "o->in->x", None),
    ("req->hdr.len", "len", "req->hdr.len", None),
    ("req->path:string", "path", "req->path", "string"),
    ("arr[3]", "arr", "arr[3]", None),
    ("arr[0x10]:u8", "arr", "arr[0x10]", "u8"),
    ("@counter", "counter", "@counter", None),
    ("@config.limit", "limit", "@config.limit", None),
    ("n=o->tag:x", "n", "o->tag", "x"),
    ("c:s", "c", "c", "s"),
    ("arg1->x", "x", "arg1->x", None),
])
def test_debug_variables(text: str, name: str, expression: str, cast: str | None) -> None:
    (arg,) = parse_probe(f"p:./main:f {text}").fetchargs
    assert (arg.name, arg.source) == (name, DebugVariable(expression, cast))
    assert arg.typed == (cast is not None)


def test_what_stays_the_kernels() -> None:
    spec = parse_probe("p:./main:f arg0 %di @0x10 @+0x10 +8(%di) $stack2 $comm")
    assert not any(isinstance(arg.source, DebugVariable) for arg in spec.fetchargs)
    assert not spec.uses_debug_info
    # An untyped $retval is typed from DWARF where there is some, else the kernel's.
    ret = parse_probe("r:./main:f $retval retval t=$retval:s32")
    assert [type(arg.source).__name__ for arg in ret.fetchargs] == [
        "DebugVariable", "Register", "Register"]
    assert ret.fetchargs[0].name == "arg1" and not ret.uses_debug_info
    assert parse_probe("r:./main:f $retval->len").uses_debug_info
    expanded = parse_probe("p:./main:f $params $vars")
    assert [arg.source for arg in expanded.fetchargs] == [DebugVariable("$params"),
                                                          DebugVariable("$vars")]


@pytest.mark.parametrize(("word", "message"), [
    ("p:./main:f $retval->len", "return probes"),
    ("p:./main:f x=$params", "several variables"),
    ("p:./main:f $vars:u8", "several variables"),
    ("p:./main:f +0(a)", "not inside +OFFSET"),
    ("p:./main:f a[-1]", "cannot parse"),
    ("p:./main:f o->", "cannot parse"),
    ("p:./main:f a a", "used twice"),
    ("p:./main:f o->x n->x", "used twice"),
    ("r:./main:main.c:27", "not on a source line"),
    ("./main:f:3%return", "not on a source line"),
])
def test_debug_variable_errors(word: str, message: str) -> None:
    with pytest.raises(ProbeSyntaxError, match=re.escape(message)):
        parse_probe(word)


@pytest.mark.parametrize(("word", "target", "location", "line"), [
    ("p:./main:main.c:27", "./main", "main.c:27", LineLocation("main.c", None, 27)),
    ("p:./main:src/main.c:27", "./main", "src/main.c:27", LineLocation("src/main.c", None, 27)),
    ("p:./main:add:3", "./main", "add:3", LineLocation(None, "add", 3)),
    ("p:./main:ns::f:0", "./main", "ns::f:0", LineLocation(None, "ns::f", 0)),
    ("p:libc:malloc.c:3000", "libc", "malloc.c:3000", LineLocation("malloc.c", None, 3000)),
    ("p:./main:ns::f", "./main", "ns::f", None),
    ("p:./main:1234", "./main", "1234", None),
    ("p:./main:0x10", "./main", "0x10", None),
    ('p:"/opt/a:b/main":add:3', "/opt/a:b/main", "add:3", LineLocation(None, "add", 3)),
    ("usdt:./main:prov:name", "./main", "prov:name", None),
])
def test_source_line_locations(word: str, target: str, location: str,
                               line: LineLocation | None) -> None:
    spec = parse_probe(word)
    assert (spec.target, spec.location, spec.source_line) == (target, location, line)
    assert spec.uses_debug_info == (line is not None)
