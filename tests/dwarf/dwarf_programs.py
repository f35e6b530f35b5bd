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
from helpers import build_c

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


def marker_line(name: str, source: str = PROGRAM) -> int:
    """The line of ``source`` carrying ``/* LINE:name */``."""
    for number, text in enumerate(source.splitlines(), start=1):
        if f"LINE:{name} " in text:
            return number
    raise AssertionError(name)


# A program that writes, to the file named by argv[1], what each probe should read: a line
# "EVENT NAME=VALUE ..." before each call (after it for return values, and inside the loop
# for the loop's line and the inlined copy). Its values come from argc and argv, so no
# compiler can fold them away.
VALUES_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct inner { int x; long y; };
struct outer { struct inner *in; int tag; char name[16]; };
struct config { int limit; const char *label; int table[4]; };

int counter = 5;
struct config config = { 100, "cfg", { 10, 20, 30, 40 } };
char banner[16] = "banner";
static FILE *out;

__attribute__((noinline)) int add(int a, int b) {
    return a + b;
}

__attribute__((noinline)) long scalars(unsigned u, char c, short s, long l, void *p) {
    return (long)u + c + s + l + (p != 0);
}

__attribute__((noinline)) int deep(struct outer *o) {
    return o->in->x + o->tag + (int)strlen(o->name);
}

__attribute__((noinline)) size_t strings(const char *s, char *buf) {
    return strlen(s) + strlen(buf);
}

__attribute__((noinline)) long arrays(long *arr, int n) {
    long sum = 0;
    for (int k = 0; k < n; k++) sum += arr[k];
    return sum;
}

__attribute__((noinline)) int globals(int which) {
    return config.limit + counter * which;
}

static inline __attribute__((always_inline)) int square(int v) {
    fprintf(out, "square v=%d\n", v);
    return v * v + counter;
}

__attribute__((noinline)) int sum_squares(int n) {
    int total = 0;
    for (int i = 0; i < n; i++) {
        fprintf(out, "loop i=%d total=%d\n", i, total);
        total += square(i);          /* LINE:loop */
    }
    return total;
}

int main(int argc, char **argv) {
    out = fopen(argv[1], "w");
    int seed = argc + 1;
    struct inner in = { seed + 4, seed * 1000000000L };
    struct outer o = { &in, seed, "hello" };
    char buf[16];
    strncpy(buf, argv[2], sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    long arr[5];
    for (int k = 0; k < 5; k++) arr[k] = seed * (k + 1);

    fprintf(out, "add a=%d b=%d\n", seed - 9, seed - 1);
    int r = add(seed - 9, seed - 1);
    fprintf(out, "add__return arg1=%d\n", r);
    fprintf(out, "scalars u=%u c=%d s=%d l=%ld p=%p\n", 4000000000u - seed, -seed, -300 * seed,
            -7000000000L * seed, (void *)&in);
    r += scalars(4000000000u - seed, -seed, -300 * seed, -7000000000L * seed, &in);
    fprintf(out, "deep x=%d y=%ld tag=%d name=%s\n", in.x, in.y, o.tag, o.name);
    r += deep(&o);
    fprintf(out, "strings s=%s buf=%s\n", argv[2] + 1, buf);
    r += (int)strings(argv[2] + 1, buf);
    fprintf(out, "arrays arr=%ld n=%d\n", arr[3], argc + 3);
    r += (int)arrays(arr, argc + 3);
    fprintf(out, "globals which=%d counter=%d limit=%d label=%s banner=%s\n", seed - 2,
            counter, config.limit, config.label, banner);
    r += globals(seed - 2);
    fprintf(out, "globals__return arg1=%d counter=%d banner=%s\n",
            config.limit + counter * (seed - 2), counter, banner);
    r += sum_squares(seed + 1);
    fclose(out);
    return r == 0;
}
"""

# Probe words reading, for each event VALUES_PROGRAM writes, the values it writes ({path} and
# {loop} are filled in: the program and the line of LINE:loop).
VALUES_PROBES = [
    "p:add {path}:add a b",
    "r:add__return {path}:add $retval",
    "p:scalars {path}:scalars u c s l p",
    "p:deep {path}:deep x=o->in->x y=o->in->y tag=o->tag name=o->name:string",
    "p:strings {path}:strings s:string buf:string",
    "p:arrays {path}:arrays arr=arr[3] n",
    "p:globals {path}:globals which @counter @config.limit @config.label:string "
    "@banner:string",
    "r:globals__return {path}:globals $retval @counter @banner:string",
    "p:loop {path}:values.c:{loop} i total",
    "p:square {path}:square v",
]


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


ATTACH_BUILDS = [Build(compiler, level) for compiler in ("gcc", "clang-19")
                 for level in ("-O0", "-O1", "-O2")]


def build(spec: Build, source: str = PROGRAM, name: str = "main") -> Path:
    """Compile ``source`` with ``spec`` (cached by content, ``helpers.build_c``)."""
    return build_c(source, name=name, flags=spec.flags,
                   compiler=None if spec.compiler == "gcc" else spec.compiler)


def build_params() -> list[object]:
    """``BUILDS`` as pytest params with readable ids."""
    return [pytest.param(spec, id=spec.label) for spec in BUILDS]
