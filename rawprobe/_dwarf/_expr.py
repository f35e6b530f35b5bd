"""The variable expressions users write in fetch-args, as perf probe takes them.

Grammar (perf's ``tools/perf/util/probe-event.c``, ``parse_perf_probe_arg``)::

    EXPR     := BASE ACCESS*
    BASE     := IDENT            a parameter or local in scope, else a global of the unit
              | '@' IDENT        a global (or file-static) variable of the probed file
              | '$retval'        the return value, on a return probe
    ACCESS   := '->' IDENT       member through a pointer
              | '.' IDENT        member of a struct or union
              | '[' INDEX ']'    element of an array, or through a pointer (INDEX: decimal/0x hex)

``$params`` and ``$vars`` stand for several variables and are expanded by the caller
(:meth:`DebugInfo.params`, :meth:`DebugInfo.vars`), not parsed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ._errors import ExpressionSyntaxError

__all__ = [
    "Index",
    "Member",
    "VariableExpression",
    "is_variable_expression",
    "parse_expression",
    "reads_locals",
]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)\]")


@dataclass(frozen=True)
class Member:
    """``->name`` (``arrow``) or ``.name``; ``column`` is where it starts in the text."""

    name: str
    arrow: bool
    column: int

    def __str__(self) -> str:
        return ("->" if self.arrow else ".") + self.name


@dataclass(frozen=True)
class Index:
    """``[index]``; ``column`` is where the ``[`` is in the text."""

    index: int
    column: int

    def __str__(self) -> str:
        return f"[{self.index}]"


Accessor = Member | Index


@dataclass(frozen=True)
class VariableExpression:
    """A parsed variable expression.

    Attributes:
        text: The expression as written.
        kind: ``scope`` (a bare identifier: a parameter or local, else a global of the probed
            function's unit), ``global`` (``@name``) or ``retval`` (``$retval``).
        name: The variable's identifier (``retval`` for ``$retval``).
        accessors: Member and index accesses, left to right.
    """

    text: str
    kind: Literal["scope", "global", "retval"]
    name: str
    accessors: tuple[Accessor, ...]

    @property
    def field_name(self) -> str:
        """A name for the event field: the last identifier (``x`` for ``o->in->x``)."""
        for accessor in reversed(self.accessors):
            if isinstance(accessor, Member):
                return accessor.name
        return self.name


def is_variable_expression(text: str) -> bool:
    """Whether a fetch-arg is one of the debug-information forms (so
    :meth:`DebugInfo.compile` should translate it) rather than a kernel fetch-arg.

    Args:
        text: The fetch-arg without ``NAME=`` and ``:TYPE``.

    Returns:
        True for a bare identifier, ``@name``, ``$retval`` followed by accessors, ``$params`` and
        ``$vars``; False for ``%reg``, ``$argN``, ``$stack``, ``+8(%di)``, ``@0x10``, ``@+0x10``,
        ``\\imm`` and the like.
    """
    if text in ("$params", "$vars"):
        return True
    if text.startswith("$retval"):
        return len(text) > len("$retval")
    body = text[1:] if text.startswith("@") else text
    return _IDENT.match(body) is not None


def reads_locals(text: str) -> bool:
    """Whether a fetch-arg reads a parameter or local: then perf probe puts a function probe
    after the prologue (tools/perf/util/probe-finder.c, ``skip_prologue``, which asks
    ``perf_probe_with_var``: a C identifier, ``$params`` or ``$vars``), so use
    :attr:`FunctionInstance.probe_address`; else :attr:`FunctionInstance.entry_address`.

    Args:
        text: The fetch-arg without ``NAME=`` and ``:TYPE``.

    Returns:
        True for ``a``, ``o->in->x``, ``$params``, ``$vars``; False for ``@global``,
        ``$retval`` and kernel fetch-args.
    """
    return text in ("$params", "$vars") or (
        _IDENT.match(text) is not None and not text.startswith("$"))


def parse_expression(text: str) -> VariableExpression:
    """Parse a variable expression.

    Args:
        text: ``a``, ``o->in->x``, ``req->path``, ``a[3]``, ``@counter``, ``@config.limit``,
            ``$retval``, ``$retval->len``.

    Returns:
        The parsed expression.

    Raises:
        ExpressionSyntaxError: The text is not a variable expression; the message points at
            the first character that does not fit.
    """
    position = 0
    kind: Literal["scope", "global", "retval"] = "scope"
    if text.startswith("$retval"):
        kind, name, position = "retval", "retval", len("$retval")
    else:
        if text.startswith("@"):
            kind, position = "global", 1
        if text in ("$params", "$vars"):
            raise ExpressionSyntaxError(
                f"{text} stands for several variables; expand it with params() or vars()",
                text, 0)
        match = _IDENT.match(text, position)
        if match is None:
            what = "a global variable's name after '@'" if kind == "global" else (
                "a variable name (a C identifier), @global or $retval")
            raise ExpressionSyntaxError(f"expected {what}", text, position)
        name, position = match.group(), match.end()
    accessors: list[Accessor] = []
    while position < len(text):
        start = position
        if text.startswith("->", position) or text.startswith(".", position):
            arrow = text.startswith("->", position)
            position += 2 if arrow else 1
            match = _IDENT.match(text, position)
            if match is None:
                raise ExpressionSyntaxError("expected a member name", text, position)
            accessors.append(Member(match.group(), arrow, start))
            position = match.end()
        elif text.startswith("[", position):
            match = _INDEX.match(text, position + 1)
            if match is None:
                raise ExpressionSyntaxError(
                    "expected a non-negative index and ']' (a[3], a[0x10])", text, position + 1)
            accessors.append(Index(int(match.group(1), 0), start))
            position = match.end()
        else:
            raise ExpressionSyntaxError(
                "expected '->member', '.member' or '[index]' (a type goes after ':')",
                text, position)
    return VariableExpression(text, kind, name, tuple(accessors))
