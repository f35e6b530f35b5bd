"""Source texts of the programs the symbol tests compile."""

from __future__ import annotations

__all__ = [
    "CPP_PROGRAM",
    "C_LIBRARY",
    "C_PROGRAM",
    "FAKE_GO_PROGRAM",
    "VERSIONED_LIBRARY",
    "VERSION_SCRIPT",
    "c_program_using_library",
]

# Every kind of function symbol a C program has: global, static (only in .symtab), an alias and
# a weak alias of one function, and an IFUNC with its resolver.
C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static int helper(int x) { return x * 3; }
__attribute__((noinline)) int add(int a, int b) { return a + helper(b); }
__attribute__((noinline)) int real_work(int n) { return n + 1; }
int alias_work(int n) __attribute__((alias("real_work")));
int weak_work(int n) __attribute__((weak, alias("real_work")));
__attribute__((noinline)) static int impl_one(int x) { return x + 100; }
static int (*pick(void))(int) { return impl_one; }
int chooser(int x) __attribute__((ifunc("pick")));

int main(int argc, char **argv) {
    (void)argv;
    int total = add(argc, 2) + alias_work(argc) + chooser(argc);
    printf("%d\n", total);
    return 0;
}
"""

C_LIBRARY = r"""
__attribute__((noinline)) static int lib_static(int x) { return x - 1; }
__attribute__((noinline)) int lib_add(int a, int b) { return a + b; }
__attribute__((noinline)) int lib_call(int x) { return lib_static(x) * 2; }
"""


def c_program_using_library() -> str:
    """A program that calls the functions of :data:`C_LIBRARY`."""
    return r"""
#include <stdio.h>
int lib_add(int a, int b);
int lib_call(int x);
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", lib_add(argc, 1) + lib_call(argc));
    return 0;
}
"""


CPP_PROGRAM = r"""
#include <cstdio>

namespace shop {
struct Cart {
    Cart() : items(0) {}
    ~Cart() { std::printf("bye\n"); }
    int total(int extra) const;
    int total(double extra) const;
    static Cart make();
    Cart& operator+=(int n);
    int items;
};
__attribute__((noinline)) int Cart::total(int extra) const { return items + extra; }
__attribute__((noinline)) int Cart::total(double extra) const { return items + (int)extra; }
__attribute__((noinline)) Cart Cart::make() { return Cart(); }
__attribute__((noinline)) Cart& Cart::operator+=(int n) { items += n; return *this; }
template <typename T> __attribute__((noinline)) T twice(T value) { return value + value; }
template int twice<int>(int);
namespace {
__attribute__((noinline)) int hidden(int x) { return x * 7; }
}
__attribute__((noinline)) int use_hidden(int x) { return hidden(x); }
}  // namespace shop

int main(int argc, char **) {
    shop::Cart cart = shop::Cart::make();
    cart += argc;
    auto lambda = [argc](int y) { return argc + y; };
    std::printf("%d %d %d %d\n", cart.total(1), cart.total(2.0), shop::twice(argc),
                shop::use_hidden(argc) + lambda(1));
    return 0;
}
"""

# parse@VERS_1.0 is the compatibility version, parse@@VERS_2.0 the default one (binutils gas
# ".symver"; the version script puts them in two version nodes).
VERSIONED_LIBRARY = r"""
__asm__(".symver old_parse, parse@VERS_1.0");
__asm__(".symver new_parse, parse@@VERS_2.0");
__attribute__((noinline)) int old_parse(const char *s) { return s[0]; }
__attribute__((noinline)) int new_parse(const char *s) { return s[0] + 1; }
__attribute__((noinline)) int stable(int x) { return x; }
"""

VERSION_SCRIPT = """
VERS_1.0 { global: stable; parse; local: *; };
VERS_2.0 { global: parse; } VERS_1.0;
"""

# Not Go, but marked the way a Go binary is (a .note.go.buildid section and runtime.main), so
# the resolver must treat it as one.
FAKE_GO_PROGRAM = r"""
__attribute__((section(".note.go.buildid"), used, aligned(4)))
static const unsigned char go_note[] = {
    3, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 'G', 'o', 0, 0, 'a', 'b', 'c', 0};
__attribute__((noinline)) void go_main(void) __asm__("runtime.main");
__attribute__((noinline)) void go_main(void) {}
__attribute__((noinline)) int handler(int x) { return x + 1; }
int main(void) { go_main(); return handler(0) - 1; }
"""
