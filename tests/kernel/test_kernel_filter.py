"""Filters run in the kernel: every operator against a program that knows what it passed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import build_c

from rawprobe._tracer import Tracer

SOURCE = r"""
__attribute__((noinline)) long check(long v, unsigned long u, const char *s) {
    asm volatile("" ::: "memory");
    return v;
}
int main(void) {
    static const char *words[] = {"alpha", "beta", "alphabet", "gamma", ""};
    for (int i = 0; i < 10; i++)
        check(i - 5, 1UL << i, words[i % 5]);
    check(0, 0, (const char *)16); /* a string that cannot be read */
    return 0;
}
"""
WORDS = ["alpha", "beta", "alphabet", "gamma", ""]
CALLS = [(i - 5, 1 << i, WORDS[i % 5]) for i in range(10)] + [(0, 0, None)]

Row = tuple[int, int, "str | None"]
CASES: list[tuple[str, Callable[[int, int, str | None], bool]]] = [
    ("v == 0", lambda v, u, s: v == 0),
    ("v != 0", lambda v, u, s: v != 0),
    ("v < -2", lambda v, u, s: v < -2),
    ("v <= -2", lambda v, u, s: v <= -2),
    ("v > 2", lambda v, u, s: v > 2),
    ("v >= 2", lambda v, u, s: v >= 2),
    ("u & 0x30", lambda v, u, s: u & 0x30 != 0),
    ("u > 0x40", lambda v, u, s: u > 0x40),
    ('s == "beta"', lambda v, u, s: s == "beta"),
    ('s != "beta"', lambda v, u, s: s is not None and s != "beta"),
    ('s ~ "alpha*"', lambda v, u, s: s is not None and s.startswith("alpha")),
    ('s !~ "alpha*"', lambda v, u, s: s is not None and not s.startswith("alpha")),
    ('s == ""', lambda v, u, s: s == ""),
    ('v < 0 && s ~ "a*" || v == 4', lambda v, u, s: (v < 0 and s is not None
                                                     and s.startswith("a")) or v == 4),
    ("!(v < 0) && !(u & 1)", lambda v, u, s: not v < 0 and not u & 1),
    ('comm == "filt"', lambda v, u, s: True),
    ('comm ~ "fi*" && (v == 1 || v == 3)', lambda v, u, s: v in (1, 3)),
    ("pid == 1", lambda v, u, s: False),
]


@pytest.fixture(scope="module")
def program() -> Path:
    return build_c(SOURCE, name="filt", flags=("-O1",))


def test_every_operator(program: Path) -> None:
    seen: dict[str, list[Row]] = defaultdict(list)
    with Tracer(command=[str(program)]) as tracer:
        for index, (expr, _predicate) in enumerate(CASES):
            tracer.add(f"p:case{index} {program}:check v=%di:s64 u=%si:u64 s=+0(%dx):string",
                       filter=expr)
        for event in tracer.events(timeout=30):
            seen[event.event].append(tuple(event.values))  # type: ignore[arg-type]
        stats = tracer.stats()
    for index, (expr, predicate) in enumerate(CASES):
        expected = [call for call in CALLS if predicate(*call)]
        assert seen[f"case{index}"] == expected, expr
    assert stats.hits == len(CASES) * len(CALLS)
    assert stats.events + stats.filtered == stats.hits
    assert stats.lost == 0


def test_rejected_hits_take_no_ring_space(program: Path) -> None:
    with Tracer(command=[str(program)]) as tracer:
        tracer.add(f"p:{program}:check v=%di:s64 s=+0(%dx):string", filter="v > 100")
        events = list(tracer.events(timeout=30))
        consumer, producer = tracer._session.ring.positions()  # type: ignore[union-attr]
        stats = tracer.stats()
    assert events == []
    assert (stats.hits, stats.filtered, stats.events) == (len(CALLS), len(CALLS), 0)
    assert producer == 0 and consumer == 0  # not one byte was reserved
