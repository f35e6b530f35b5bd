"""The probe-word parser: both head spellings, places, fetch-args, and its errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe import ProbeSyntaxError, RawprobeError
from rawprobe._probe.fetchargs import Register
from rawprobe._probe.words import default_event_name, parse_probe, split_place


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
