"""The variable-expression parser: what it accepts, and where it points when it refuses."""

from __future__ import annotations

import pytest

from rawprobe._dwarf import (
    ExpressionSyntaxError,
    is_variable_expression,
    parse_expression,
    reads_locals,
)
from rawprobe._dwarf._expr import Index, Member
from rawprobe._errors import UsageError


def test_chain_of_members_and_indexes() -> None:
    parsed = parse_expression("o->in->x")
    assert parsed.kind == "scope"
    assert parsed.name == "o"
    assert parsed.accessors == (Member("in", True, 1), Member("x", True, 5))
    assert parsed.field_name == "x"

    parsed = parse_expression("@config.table[0x2]")
    assert (parsed.kind, parsed.name) == ("global", "config")
    assert parsed.accessors == (Member("table", False, 7), Index(2, 13))
    assert parsed.field_name == "table"


def test_retval_and_bare_names() -> None:
    assert parse_expression("$retval").kind == "retval"
    assert parse_expression("$retval->len").accessors == (Member("len", True, 7),)
    assert parse_expression("a").field_name == "a"
    assert parse_expression("a[3]").field_name == "a"
    assert str(parse_expression("req->hdr.len[1]").accessors[1]) == ".len"


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("a->", 3, "member name"),
        ("a.", 2, "member name"),
        ("a[", 2, "index"),
        ("a[-1]", 2, "index"),
        ("a[1", 2, "index"),
        ("@", 1, "global"),
        ("1abc", 0, "variable name"),
        ("a b", 1, "'->member'"),
        ("a:s32", 1, "a type goes after ':'"),
        ("%di", 0, "variable name"),
        ("$params", 0, "several variables"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, column: int, words: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse_expression(text)
    assert caught.value.column == column
    assert words in str(caught.value)
    assert isinstance(caught.value, UsageError)
    assert str(caught.value).splitlines()[-1] == "  " + " " * column + "^"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", True), ("o->in->x", True), ("@counter", True), ("$retval->x", True),
        ("$params", True), ("$vars", True), ("_x[2]", True),
        ("$retval", False), ("%di", False), ("$arg1", False), ("$stack3", False),
        ("+8(%di)", False), ("@0x10", False), ("@+0x10", False), ("\\42", False),
        ("$comm", False), ("-4(%bp)", False),
    ],
)
def test_which_fetchargs_need_debug_information(text: str, expected: bool) -> None:
    # A plain $retval is the kernel's own; $retval->x needs the return type from DWARF.
    assert is_variable_expression(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a", True), ("o->in->x", True), ("$params", True), ("$vars", True), ("_x", True),
     ("@counter", False), ("$retval", False), ("$retval->x", False), ("%di", False),
     ("$arg1", False), ("+8(%di)", False), ("\\1", False)],
)
def test_which_fetchargs_move_a_function_probe_past_the_prologue(text: str,
                                                                 expected: bool) -> None:
    assert reads_locals(text) is expected
