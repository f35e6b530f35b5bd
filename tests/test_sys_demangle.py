"""C++ demangling through libstdc++'s ``__cxa_demangle``, against binutils' ``c++filt``.

The oracle is ``c++filt --no-verbose``: the runtime demangles without libiberty's DMGL_VERBOSE
option, as ``nm -C`` and ``objdump -C`` do, so the standard abbreviations ``Ss``, ``Si``, ``So``
and ``Sd`` print as ``std::string``, ``std::istream``, ``std::ostream`` and ``std::iostream``.
Plain ``c++filt`` spells those four out in full; a test shows that this is the only difference.

Every mangled name of libstdc++ itself (defined and undefined, symbol versions kept) and of a
C++20 program compiled here (templates, lambdas, ABI tags, operators, clones) must come out as
``c++filt`` prints it, byte for byte; a name the runtime cannot demangle must be one that
``c++filt`` echoes unchanged.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import build_c, require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe._sys import demangle as demangle_module
from rawprobe._sys.demangle import demangle, demangler_available

pytestmark = pytest.mark.skipif(
    not demangler_available(), reason="libstdc++.so.6 is not installed"
)

CASES = {
    "_ZN2ns3Foo3barEi": "ns::Foo::bar(int)",
    "_Z3foov": "foo()",
    "_ZNK4shop4Cart5totalEi": "shop::Cart::total(int) const",
    "_ZN4shop4CartC2Ev": "shop::Cart::Cart()",
    "_ZN4shop4CartD1Ev": "shop::Cart::~Cart()",
    "_ZN4shop4CartpLEi": "shop::Cart::operator+=(int)",
    "_ZltIiEbRKT_S2_": "bool operator< <int>(int const&, int const&)",
    "_ZN4shop12_GLOBAL__N_16hiddenEi": "shop::(anonymous namespace)::hidden(int)",
    "_ZZ4mainENKUlvE_clEv": "main::{lambda()#1}::operator()() const",
    "_Z3fooB5cxx11v": "foo[abi:cxx11]()",
    "_ZN4shopli4_usdEy": 'shop::operator"" _usd(unsigned long long)',
    "_ZThn16_N1B1fEv": "non-virtual thunk to B::f()",
    "_ZTVSt9exception": "vtable for std::exception",
    "_ZGVZ4mainE1x": "guard variable for main::x",
    # GCC's clone suffixes are part of the grammar cp-demangle.c accepts.
    "_Z3foov.cold": "foo() [clone .cold]",
    "_Z3foov.constprop.0.isra.0": "foo() [clone .constprop.0] [clone .isra.0]",
    "_ZL3barv.lto_priv.0": "bar() [clone .lto_priv.0]",
    # A symbol version is kept as c++filt keeps it.
    "_ZNSt9exceptionD1Ev@@GLIBCXX_3.4": "std::exception::~exception()@@GLIBCXX_3.4",
    "_Z3foov@plt": "foo()@plt",
    # The four standard abbreviations, without DMGL_VERBOSE (c++filt -i, nm -C)...
    "_ZNKSs4sizeEv": "std::string::size() const",
    "_ZNKSi6gcountEv": "std::istream::gcount() const",
    # ...except in a constructor's or destructor's name, which always spells them out.
    "_ZNSsC1Ev": (
        "std::basic_string<char, std::char_traits<char>, std::allocator<char> >::basic_string()"
    ),
}

# cp-demangle.c's standard_subs: what DMGL_VERBOSE spells out in full.
VERBOSE_SPELLINGS = {
    "std::basic_string<char, std::char_traits<char>, std::allocator<char> >": "std::string",
    "std::basic_istream<char, std::char_traits<char> >": "std::istream",
    "std::basic_ostream<char, std::char_traits<char> >": "std::ostream",
    "std::basic_iostream<char, std::char_traits<char> >": "std::iostream",
}


def cxxfilt(names: list[str], *options: str) -> list[str]:
    require_tool("c++filt")
    output = subprocess.run(
        ["c++filt", *options], input="\n".join(names) + "\n", capture_output=True, text=True,
        check=True,
    ).stdout.splitlines()
    assert len(output) == len(names)
    return output


def mangled_symbols(path: Path | str, *nm_options: str) -> list[str]:
    """Every distinct ``_Z`` symbol ``nm`` lists (defined or not), with its version if any."""
    require_tool("nm")
    listing = subprocess.run(
        ["nm", *nm_options, str(path)], capture_output=True, text=True, check=True
    ).stdout
    last_words = (line.split()[-1] for line in listing.splitlines() if line.strip())
    return sorted({word for word in last_words if word.startswith("_Z")})


def loaded_libstdcxx() -> Path:
    """The libstdc++ this process demangles with (the one the dynamic linker picked)."""
    demangle("_Z3foov")
    for line in Path("/proc/self/maps").read_text().splitlines():
        if "libstdc++.so.6" in line:
            return Path(line.split(maxsplit=5)[5])
    raise AssertionError("libstdc++.so.6 is not mapped after demangling")


def assert_agrees(names: list[str]) -> None:
    """``demangle(name) or name`` is what ``c++filt --no-verbose`` prints, for every name."""
    expected = cxxfilt(names, "--no-verbose")
    disagreements = [
        f"{name}: {demangle(name)!r} != {want!r}"
        for name, want in zip(names, expected, strict=True)
        if (demangle(name) or name) != want
    ]
    assert not disagreements, f"{len(disagreements)}:\n" + "\n".join(disagreements[:20])


# -- hand-picked names ------------------------------------------------------------------------


@pytest.mark.parametrize(("mangled", "expected"), sorted(CASES.items()))
def test_known_names(mangled: str, expected: str) -> None:
    assert demangle(mangled) == expected


def test_known_names_agree_with_cxxfilt() -> None:
    names = sorted(CASES)
    assert cxxfilt(names, "--no-verbose") == [CASES[name] for name in names]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "malloc",
        "main",
        # __cxa_demangle demangles bare types too ("i" is "int"): C functions named so stay.
        "i",
        "f",
        "Ss",
        "St6vector",
        "__Z3foov",  # a Mach-O style extra underscore is not an ELF mangled name
        "_GLOBAL__sub_I_main",  # c++filt leaves it alone as well
        "_Z",
        "_ZN",
        "_Z1",
        "_Z9foov",  # the source name runs past the end
        "_ZSZ1fv",
        "_Z3foov.",  # a clone suffix needs at least one character
        "_Z3foo\0v",
    ],
)
def test_not_mangled_or_invalid(name: str) -> None:
    assert demangle(name) is None


def test_invalid_names_are_what_cxxfilt_echoes() -> None:
    names = ["_Z", "_ZN", "_Z1", "_Z9foov", "_ZSZ1fv", "_Z3foov.", "_ZZZZ", "_Z1fIEv"]
    assert cxxfilt(names, "--no-verbose") == names
    assert [demangle(name) for name in names] == [None] * len(names)


def _name_of_length(length: int) -> str:
    """``_ZN1a<N>xxx…Ev``: ``a::xxx…()``, exactly ``length`` characters long."""
    for digits in range(1, 6):
        identifier = length - len("_ZN1a") - len("Ev") - digits
        if len(str(identifier)) == digits:
            return f"_ZN1a{identifier}{'x' * identifier}Ev"
    raise AssertionError(length)


def test_long_names() -> None:
    # Substitutions make the text far longer than the name (300 uses of S1_, 6 KB of text),
    # and a thousand pointer levels nest deep.
    many = "_Z1fISt6vectorIiSaIiEEJ" + "S1_" * 300 + "EEvv"
    text = demangle(many)
    assert text is not None and len(text) > 6 * len(many)
    deep = "_Z1f" + "P" * 1000 + "i"
    assert demangle(deep) == "f(int" + "*" * 1000 + ")"
    # A name of 1,024 characters is demangled; one of 1,025 is not: cp-demangle.c sizes its
    # component arrays at twice the name's length and refuses beyond DEMANGLE_RECURSION_LIMIT
    # (2048), as c++filt does unless given --no-recurse-limit. None of the 91,583 distinct
    # names of libstdc++ 12, libLLVM 19 and libclang-cpp 19 on Debian 12 is that long.
    longest, too_long = _name_of_length(1024), _name_of_length(1025)
    assert demangle(longest) == "a::" + "x" * (1024 - len("_ZN1a1019Ev")) + "()"
    assert demangle(too_long) is None
    assert_agrees([many, deep, longest, too_long])


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="_ZNKSILEJTDpvicdlmRPOFAM0123456789abcxyz.@", max_size=60))
def test_arbitrary_input_never_raises(text: str) -> None:
    result = demangle("_Z" + text)
    assert result is None or isinstance(result, str)


# -- every name of real binaries --------------------------------------------------------------


def test_every_libstdcxx_symbol_agrees_with_cxxfilt() -> None:
    names = mangled_symbols(loaded_libstdcxx(), "-D")
    assert len(names) > 3000
    assert any("@@" in name for name in names)
    assert_agrees(names)


def _short_spellings(text: str) -> str:
    for full, short in VERBOSE_SPELLINGS.items():
        # "hash<std::basic_string<…> >" (a space between two '>') is "hash<std::string>".
        text = text.replace(full + " >", short + ">").replace(full, short)
    return text


def test_plain_cxxfilt_differs_only_in_the_verbose_abbreviations() -> None:
    """Against plain ``c++filt`` (DMGL_VERBOSE) the only differences are cp-demangle.c's four
    standard abbreviations spelled out; every other name is the same."""
    names = mangled_symbols(loaded_libstdcxx(), "-D")
    verbose = cxxfilt(names)
    differing = 0
    for name, want in zip(names, verbose, strict=True):
        ours = demangle(name) or name
        if ours != want:
            differing += 1
            assert _short_spellings(ours) == _short_spellings(want), name
    assert 0 < differing < len(names) // 10


PROGRAM = r"""
#include <compare>
#include <concepts>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace shop {
struct Money { long cents; auto operator<=>(const Money&) const = default; };
Money operator""_usd(unsigned long long v) { return Money{static_cast<long>(v * 100)}; }
Money operator+(Money a, Money b) { return Money{a.cents + b.cents}; }
struct Cart {
    std::vector<Money> items;
    Cart& operator+=(Money m) { items.push_back(m); return *this; }
    Money& operator[](std::size_t i) { return items[i]; }
    explicit operator bool() const { return !items.empty(); }
    void* operator new(std::size_t n) { return ::operator new(n); }
    void operator delete(void* p) { ::operator delete(p); }
    Money total() const;
    template <typename F> auto visit(F&& f) const -> decltype(f(Money{})) {
        return f(items.front());
    }
    virtual ~Cart() = default;
};
Money Cart::total() const { Money t{0}; for (auto& m : items) t = t + m; return t; }
inline namespace v2 {
[[gnu::abi_tag("fancy")]] std::string label(int n) { return std::to_string(n); }
}
namespace { int hidden(int x) { return x * 3; } }
template <typename... Ts> std::size_t count(const Ts&... ts) { return sizeof...(ts); }
template <std::integral T> T twice(T v) requires (sizeof(T) >= 2) { return v * 2; }
template <int N, bool B> int constant() { return B ? N : -N; }
template <typename T, typename U = std::map<std::string, std::vector<T>>> struct Deep {
    U data;
    void add(const std::string& k, T v) { data[k].push_back(v); }
};
int (*select(int which))(int) { return which ? hidden : nullptr; }
int Cart::* member_ptr() { return nullptr; }
void takes_member_fn(void (Cart::*fn)() const) { (void)fn; }
void takes_array(int (&a)[4][5]) { (void)a; }
void takes_noexcept(void (*f)() noexcept) { (void)f; }
thread_local std::string tls_name = "x";
}

struct Base { virtual int f() { return 1; } virtual ~Base() = default; };
struct Other { virtual int g() { return 2; } virtual ~Other() = default; };
struct Derived : Base, Other { int f() override { return 3; } int g() override { return 4; } };

__attribute__((noinline)) int cold_path(int x) {
    if (__builtin_expect(x == 12345, 0)) {
        std::ostringstream s;
        s << "bad " << x;
        throw std::runtime_error(s.str());
    }
    return x + 1;
}

int main(int argc, char** argv) {
    using namespace shop;
    Cart* c = new Cart;
    *c += 5_usd;
    *c += Money{3};
    auto lam = [c](int k) { return c->items.size() + k; };
    auto nested = [&](auto x) { return [=](int y) { return x + y + lam(1); }(2); };
    std::function<int(int)> fn = [](int v) { static int calls = 0; return v + ++calls; };
    Deep<int> d;
    d.add("a", 1);
    std::cout << label(argc) << count(1, 2.0, "s") << twice<short>(3) << constant<3, true>()
              << nested(argc) << fn(1) << select(1)(2) << cold_path(argc)
              << c->visit([](Money m) { return m.cents; }) << tls_name << std::endl;
    Derived dd;
    Base* b = &dd;
    Other* o = &dd;
    std::cout << b->f() << o->g() << std::endl;
    (void)argv;
    (void)member_ptr();
    delete c;
    auto [x, y] = std::tuple<int, double>(1, 2.0);
    (void)x;
    (void)y;
    return 0;
}
"""


@pytest.mark.parametrize("optimization", ["-O0", "-O2"])
def test_every_symbol_of_a_cxx20_program_agrees_with_cxxfilt(optimization: str) -> None:
    program = build_c(
        PROGRAM, name="demangle_target", flags=("-std=c++20", optimization, "-g"), cxx=True
    )
    names = mangled_symbols(program, "-a")
    assert len(names) > 50
    assert_agrees(names)


# -- the library itself -----------------------------------------------------------------------


def test_the_runtime_buffer_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    freed: list[Any] = []
    real_free = demangle_module.free

    def counting_free(pointer: Any) -> None:
        freed.append(pointer)
        real_free(pointer)

    monkeypatch.setattr(demangle_module, "free", counting_free)
    names = ["_Z3foov", "_ZN2ns3Foo3barEi", "_Z9foov", "malloc"]
    results = [demangle(name) for name in names]
    assert results == ["foo()", "ns::Foo::bar(int)", None, None]
    assert len(freed) == 2  # one buffer per demangled name; none for the two refused


def test_without_libstdcxx_names_stay_mangled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demangle_module, "LIBSTDCXX_SONAME", "librawprobe-absent.so.0")
    monkeypatch.setattr(demangle_module, "_loaded", False)
    monkeypatch.setattr(demangle_module, "_cxa_demangle", None)
    assert demangle("_Z3foov") is None
    assert not demangler_available()


def test_threads_demangle_alike() -> None:
    names = sorted(CASES) * 50
    expected = [demangle(name) for name in names]
    results: dict[int, list[str | None]] = {}

    def work(slot: int) -> None:
        results[slot] = [demangle(name) for name in names]

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())
