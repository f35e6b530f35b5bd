"""Filter expressions: parsing, and compilation against a probe's fields."""

from __future__ import annotations

import pytest

from rawprobe import FilterError
from rawprobe._plan import abi
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._plan.filters import compile_filter
from rawprobe._probe.filters import Comparison, Logical, Not, parse_filter
from rawprobe._probe.words import parse_probe


def probe(word: str = "p:./x:f a=%di:s32 u=%si:u64 s=+0(%dx):string arr=+0(%cx):u8[2]"):
    spec = parse_probe(word)
    return compile_fetchargs(spec.fetchargs, word=word)


def test_precedence_and_parentheses() -> None:
    expr = parse_filter("a == 1 || a == 2 && !(u > 3)")
    assert expr == Logical(
        "||",
        Comparison("a", "==", 1, 0),
        Logical("&&", Comparison("a", "==", 2, 10), Not(Comparison("u", ">", 3, 22))),
    )


def test_literals() -> None:
    assert parse_filter("a == -0x10") == Comparison("a", "==", -16, 0)
    assert parse_filter('s == "a\\"b"') == Comparison("s", "==", 'a"b', 0)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("", "empty filter", 0),
        ("a ==", "ends too early", 4),
        ("a = 1", "cannot parse", 2),
        ("(a == 1", "missing ')'", 7),
        ("a == 1 b", "unexpected 'b'", 7),
        ("== 1", "expected a field name", 0),
        ("a == b", "expected a number", 5),
    ],
)
def test_parse_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert message in info.value.message
    assert info.value.column == column
    assert info.value.exit_status == 2


def test_postfix_program() -> None:
    compiled = probe()
    program = compile_filter(parse_filter('a < 0 && !(s ~ "ab*") || pid == 7'), compiled)
    ops = [p["op"] for p in program.predicates]
    P = abi.PredOp
    assert ops == [P.CMP, P.STR_PREFIX, P.NOT, P.AND, P.CMP, P.OR]
    negated = compile_filter(parse_filter('s !~ "ab*"'), compiled).predicates
    assert [(p["op"], p["cmp"]) for p in negated] == [(P.STR_PREFIX, abi.CMP_CODES["!="])]
    first = program.predicates[0]
    a_field = compiled.fields[0]
    assert (first["src"], first["size"], first["is_signed"], first["cmp"]) == (
        a_field.offset, 4, 1, abi.CMP_CODES["<"])
    assert first["field"] == a_field.slots[0]
    assert program.strings == [b"ab"]
    assert program.predicates[4]["src"] == 8  # rp_header.pid


def test_unsigned_constants_keep_their_bits() -> None:
    program = compile_filter(parse_filter("u == 0xffffffffffffffff"), probe())
    assert program.predicates[0]["value"] == -1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope == 1", "does not have"),
        ('a == "x"', "compare it with a number"),
        ("s == 1", "compare it with a \"string\""),
        ('s < "x"', "strings compare with"),
        ('s ~ "*x"', "only prefix patterns"),
        ("arr == 1", "cannot be compared"),
        ("a ~ 1", "'~' compares strings"),
        ('s == "' + "x" * 64 + '"', "limited to 63 bytes"),
    ],
)
def test_compile_errors(text: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(parse_filter(text), probe(), text)
    assert message in info.value.message


def test_too_long() -> None:
    text = " || ".join(f"a == {i}" for i in range(20))
    with pytest.raises(FilterError, match="too long"):
        compile_filter(parse_filter(text), probe(), text)
