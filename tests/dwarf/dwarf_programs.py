"""The C programs the DWARF tests build, and the build matrix.

One program covers what variables-by-name must handle: int/unsigned/char/pointer parameters, a
struct reached through two pointers, ``char *`` and ``char[]`` strings, arrays, globals (a
struct member of one too) in a PIE, a static function inlined into another, a loop whose
locals change each iteration, and bitfields. ``main`` prints what the functions see, so the
compiler keeps every store, and the expected values are known to the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import build_c, require_tool

PROGRAM = r"""
#include <stdio.h>
#include <string.h>

struct inner { int x; long y; };
struct outer { struct inner *in; int tag; char name[16]; };
struct bits { unsigned low : 3; unsigned mid : 5; int neg : 4; unsigned char flag : 1; };
struct config { int limit; const char *label; int table[4]; };
struct node { struct node *next; int value; };

int counter = 5;
struct config config = { 100, "cfg", { 10, 20, 30, 40 } };
static long hidden_total;

__attribute__((noinline)) int add(int a, int b) {
    return a + b;
}

__attribute__((noinline)) long scalars(unsigned u, char c, unsigned char uc, short s, long l,
                                       void *p) {
    return (long)u + c + uc + s + l + (p != 0);
}

__attribute__((noinline)) int deep(struct outer *o) {
    return o->in->x + o->tag + (int)strlen(o->name);
}

__attribute__((noinline)) size_t strings(const char *s, char *buf) {
    char local[8];
    strcpy(local, "abc");
    return strlen(s) + strlen(buf) + strlen(local);
}

__attribute__((noinline)) long arrays(long *arr, int n) {
    long sum = 0;
    for (int k = 0; k < n; k++) sum += arr[k];
    return sum + config.table[2];
}

__attribute__((noinline)) int bitfields(struct bits *b) {
    return b->low + b->mid + b->neg + b->flag;
}

static inline __attribute__((always_inline)) int square(int v) {
    int r = v * v;
    return r + counter;
}

__attribute__((noinline)) int sum_squares(int n) {
    int total = 0;
    for (int i = 0; i < n; i++) {
        int sq = square(i);          /* LINE:loop_body */
        total += sq;                 /* LINE:loop_add */
    }
    hidden_total += total;
    return total;
}

__attribute__((noinline)) int chain(struct node *n) {
    return n->value;
}

__attribute__((noinline)) int globals(int which) {
    return which ? config.limit + counter : (int)hidden_total;
}

int main(int argc, char **argv) {
    struct inner in = { 7, 8 };
    struct outer o = { &in, 3, "hello" };
    struct bits b = { 5, 17, -3, 1 };
    char buf[16] = "xyz";
    long arr[5] = { 1, 2, 3, 4, 5 };
    struct node nodes[10];
    for (int k = 0; k < 10; k++) {
        nodes[k].next = k < 9 ? &nodes[k + 1] : 0;
        nodes[k].value = 100 + k;
    }
    (void)argv;
    long r = add(argc, 2);
    r += scalars(4000000000u, -5, 200, -300, -7000000000L, &in);
    r += deep(&o);                   /* LINE:main_deep */
    r += (long)strings("hello world", buf);
    r += arrays(arr, 5);
    r += bitfields(&b);
    r += sum_squares(4);
    r += globals(1);
    r += chain(nodes);
    printf("%ld %d %s %s %u %d %d %d\n", r, o.tag, o.name, buf, b.low, b.mid, b.neg, b.flag);
    return 0;
}
"""

FUNCTIONS = ("add", "scalars", "deep", "strings", "arrays", "bitfields", "sum_squares", "square",
             "chain", "globals", "main")

EXPECTED_VALUES = {
    # function → {expression → the value the kernel prints at the function probe}
    "add": {"a": "1", "b": "2"},
    "scalars": {"u": "4000000000", "c": "-5", "uc": "200", "s": "-300", "l": "-7000000000"},
    "deep": {"o->in->x": "7", "o->tag": "3", "o->name:string": '"hello"', "o->in->y": "8"},
    "strings": {"s:string": '"hello world"', "buf:string": '"xyz"', "buf[1]": "121"},
    "arrays": {"arr[3]": "4", "n": "5", "@config.table[2]": "30"},
    "bitfields": {"b->low": "5", "b->mid": "17", "b->neg": "13", "b->flag": "1"},
    "chain": {"n->value": "100", "n->next->next->value": "102",
              "n->next->next->next->next->next->next->value": "106"},
    "globals": {"which": "1", "@counter": "5", "@config.limit": "100",
                "@config.label:string": '"cfg"'},
}


def marker_line(name: str) -> int:
    """The line of ``PROGRAM`` carrying ``/* LINE:name */``."""
    for number, text in enumerate(PROGRAM.splitlines(), start=1):
        if f"LINE:{name} " in text:
            return number
    raise AssertionError(name)


@dataclass(frozen=True)
class Build:
    """One way to build the program."""

    compiler: str
    level: str
    dwarf: str = ""

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.level, "-g" if not self.dwarf else f"-gdwarf-{self.dwarf}")

    @property
    def label(self) -> str:
        return f"{self.compiler}{self.level}" + (f"-dwarf{self.dwarf}" if self.dwarf else "")


BUILDS = [
    Build(compiler, level)
    for compiler in ("gcc", "clang-19") for level in ("-O0", "-O1", "-O2")
] + [Build("gcc", "-O2", "4"), Build("clang-19", "-O0", "4")]


def build(spec: Build, source: str = PROGRAM, name: str = "main") -> Path:
    """Compile ``source`` with ``spec`` (cached by content like ``helpers.build_c``)."""
    if spec.compiler == "gcc":
        return build_c(source, name=name, flags=spec.flags)
    compiler = require_tool(spec.compiler)
    import hashlib
    import subprocess

    from helpers import BUILD_CACHE

    key = hashlib.sha256("\0".join([compiler, source, *spec.flags]).encode()).hexdigest()[:16]
    out = BUILD_CACHE / key / name
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.parent / f"{name}.c"
        src.write_text(source)
        tmp = out.parent / f"{name}.tmp"
        subprocess.run([compiler, *spec.flags, "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out


def build_params() -> list[object]:
    """``BUILDS`` as pytest params with readable ids."""
    return [pytest.param(spec, id=spec.label) for spec in BUILDS]
