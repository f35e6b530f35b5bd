"""The C++ demangler: what it prints must be exactly what c++filt prints, or nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe._symbols import demangle

CASES = {
    "_ZN2ns3Foo3barEi": "ns::Foo::bar(int)",
    "_Z3foov": "foo()",
    "_ZNK4shop4Cart5totalEi": "shop::Cart::total(int) const",
    "_ZN4shop4CartC2Ev": "shop::Cart::Cart()",
    "_ZN4shop4CartD1Ev": "shop::Cart::~Cart()",
    "_ZN4shop4CartpLEi": "shop::Cart::operator+=(int)",
    "_ZN1AnwEm": "A::operator new(unsigned long)",
    "_ZltIiEbRKT_S2_": "bool operator< <int>(int const&, int const&)",
    "_ZN4shop5twiceIiEET_S1_": "int shop::twice<int>(int)",
    "_ZN4shop12_GLOBAL__N_16hiddenEi": "shop::(anonymous namespace)::hidden(int)",
    "_ZNKSt6vectorIiSaIiEE4sizeEv": ("std::vector<int, std::allocator<int> >::size() const"),
    "_ZNSsC1Ev": (
        "std::basic_string<char, std::char_traits<char>, std::allocator<char> >::basic_string()"
    ),
    "_ZZ4mainENKUlvE_clEv": "main::{lambda()#1}::operator()() const",
    "_ZZ1fIiEvT_E1x": "f<int>(int)::x",
    "_Z3foov.cold": "foo() [clone .cold]",
    "_Z3foov.constprop.0.isra.0": "foo() [clone .constprop.0] [clone .isra.0]",
    "_Z3fooB5cxx11v": "foo[abi:cxx11]()",
    "_Z1fPA5_A4_i": "f(int (*) [5][4])",
    "_Z1fA3_Pc": "f(char* [3])",
    "_ZN1A1fEPFvvE": "A::f(void (*)())",
    "_Z1fM1AKFvvE": "f(void (A::*)() const)",
    "_Z1fM1Ai": "f(int A::*)",
    "_Z1fPVKi": "f(int const volatile*)",
    "_Z1fIJidEEvDpRKT_": "void f<int, double>(int const&, double const&)",
    "_Z1fIJEEvDpT_": "void f<>()",
    "_Z1fILi3ELb1EEvv": "void f<3, true>()",
    "_ZThn16_N1B1fEv": "non-virtual thunk to B::f()",
    "_ZTv0_n24_N1B1fEv": "virtual thunk to B::f()",
    "_ZL6staticv": "static()",
    "_ZN1XcviEv": "X::operator int()",
    "_ZN3fooE": "foo",  # not a function: no parameter list
    "_Z3foo": "foo",
}


@pytest.mark.parametrize(("mangled", "expected"), sorted(CASES.items()))
def test_known_names(mangled: str, expected: str) -> None:
    assert demangle(mangled) == expected


def test_cases_agree_with_cxxfilt() -> None:
    if shutil.which("c++filt") is None:
        pytest.skip("c++filt is not installed")
    names = sorted(CASES)
    filtered = subprocess.run(
        ["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert filtered == [CASES[name] for name in names]


@pytest.mark.parametrize("name", ["malloc", "_Z", "_ZN", "_Z1", "_Z9foov", "_ZSZ1fv", "_Z1fXE"])
def test_not_mangled_or_not_supported(name: str) -> None:
    assert demangle(name) is None


def test_every_libstdcxx_function_matches_cxxfilt() -> None:
    library = Path("/lib/x86_64-linux-gnu/libstdc++.so.6")
    if not library.exists() or shutil.which("c++filt") is None or shutil.which("nm") is None:
        pytest.skip("needs libstdc++, nm and c++filt")
    listing = subprocess.run(
        ["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True
    ).stdout
    names = sorted(
        {
            line.split()[2].split("@")[0]
            for line in listing.splitlines()
            if len(line.split()) == 3 and line.split()[2].startswith("_Z")
        }
    )
    filtered = subprocess.run(
        ["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True
    ).stdout.splitlines()
    unsupported = 0
    for name, expected in zip(names, filtered, strict=True):
        ours = demangle(name)
        if ours is None:
            unsupported += 1
        else:
            assert ours == expected, name
    assert unsupported <= len(names) // 50  # the common subset covers nearly all of it


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="_ZNKSILEJTDpvicdlmRPOFAM0123456789abcxyz", max_size=40))
def test_arbitrary_input_never_raises(text: str) -> None:
    result = demangle("_Z" + text)
    assert result is None or isinstance(result, str)
