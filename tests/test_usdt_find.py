"""Finding USDT probes by ``[PROVIDER:]NAME``, and compiling ``$argN`` of their arguments."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import require_tool
from test_usdt_programs import fixture_program, usdt_library

from rawprobe import FetchArgError
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._probe.fetchargs import Deref, ProbeRelative, Register
from rawprobe._probe.words import parse_probe
from rawprobe._usdt import (
    UsdtNotFoundError,
    UsdtProbe,
    default_fetchargs,
    find_usdt_probes,
    list_usdt_probes,
)


def symbol_value(path: Path, name: str) -> int:
    """A symbol's value as ``readelf -s`` prints it (the oracle)."""
    readelf = require_tool("readelf")
    table = subprocess.run([readelf, "-sW", str(path)], capture_output=True, text=True,
                           check=True).stdout
    values = {int(match.group(1), 16) for match in
              re.finditer(r"^\s*\d+: ([0-9a-f]+)\s+\d+\s+\w+\s+\w+\s+\w+\s+\S+\s+" +
                          re.escape(name) + r"$", table, re.MULTILINE)}
    assert len(values) == 1, (name, values)
    return values.pop()


def one(path: Path, location: str) -> UsdtProbe:
    (probe,) = find_usdt_probes(str(path), location)
    return probe


# -- names -------------------------------------------------------------------------------------


def test_provider_is_optional_when_the_name_is_unique() -> None:
    path = str(fixture_program("O2"))
    assert find_usdt_probes(path, "ints") == find_usdt_probes(path, "fixture:ints")


def test_a_probe_at_several_sites_gives_every_site() -> None:
    sites = find_usdt_probes(str(fixture_program("O2")), "fixture:twice")
    assert len(sites) == 2 and len({site.file_offset for site in sites}) == 2
    assert all(site.name == "twice" and len(site.arguments) == 1 for site in sites)


def test_a_name_two_providers_share_is_ambiguous() -> None:
    path = str(fixture_program("O2"))
    with pytest.raises(UsdtNotFoundError) as error:
        find_usdt_probes(path, "shared")
    assert error.value.available == ("fixture:shared", "other:shared")
    assert "write PROVIDER:NAME" in str(error.value) and error.value.exit_status == 2
    assert [site.name for site in find_usdt_probes(path, "other:shared")] == ["shared"]
    # A glob over one provider's probes is fine; over both, the same name still clashes.
    assert len(find_usdt_probes(path, "fixture:*")) == len(FIXTURE_SITES) - 1
    with pytest.raises(UsdtNotFoundError, match="ambiguous"):
        find_usdt_probes(path, "sha*")


FIXTURE_SITES = ("zero", "one", "bytes", "ints", "wide", "six", "constants", "symbols",
                 "globals", "indexed", "twice", "twice", "shared", "other:shared")


def test_globs() -> None:
    path = str(fixture_program("O2"))
    assert {site.name for site in find_usdt_probes(path, "fixture:t*")} == {"twice"}
    assert {site.name for site in find_usdt_probes(path, "*:s[iy]*")} == {"six", "symbols"}
    assert len(find_usdt_probes(path, "*:*")) == len(FIXTURE_SITES)


@pytest.mark.parametrize(
    ("location", "needles"),
    [
        ("nope", ["no USDT probe 'nope'", "Its probes are: fixture:bytes"]),
        ("fixture:zer", ["did you mean fixture:zero?"]),
        ("fixturx:zero", ["no USDT provider 'fixturx'", "its providers are: fixture, other"]),
        ("fixture:", ["missing the probe NAME"]),
        ("fixture:nomatch*", ["no USDT probe 'fixture:nomatch*'"]),
    ],
)
def test_unknown_probes_list_what_exists(location: str, needles: list[str]) -> None:
    with pytest.raises(UsdtNotFoundError) as error:
        find_usdt_probes(str(fixture_program("O2")), location)
    for needle in needles:
        assert needle in str(error.value)


# -- arguments of compiled programs ------------------------------------------------------------


def test_rip_relative_arguments_resolve_to_the_symbols() -> None:
    for build in ("O2", "O2-nopie"):
        path = fixture_program(build)
        probe = one(path, "symbols")
        expected = [symbol_value(path, "global_pair") + 8, symbol_value(path, "global_pair"),
                    symbol_value(path, "static_limit")]
        for argument, address in zip(probe.arguments, expected, strict=True):
            assert argument.source == Deref(0, ProbeRelative(address - probe.address))


def test_memory_and_register_arguments() -> None:
    wide_o0 = one(fixture_program("O0"), "wide")
    assert [argument.source for argument in wide_o0.arguments] == [
        Deref(-24, Register("bp")), Deref(-32, Register("bp")), Deref(-48, Register("bp"))]
    assert [(a.size, a.signed) for a in wide_o0.arguments] == [(8, True), (8, False),
                                                               (8, False)]
    bytes_o2 = one(fixture_program("O2"), "bytes")
    assert [(a.size, a.signed, a.source) for a in bytes_o2.arguments] == [
        (1, True, Register("r8")), (1, False, Register("r9"))]


def test_untranslatable_argument_is_kept_with_its_reason() -> None:
    indexed = one(fixture_program("O2"), "indexed")
    first, second = indexed.arguments
    assert first.error is not None and first.text in first.error
    assert "index register" in first.error and "does not guess" in first.error
    assert second.error is None and second.source == Register("ax")


def test_shared_library_sites_are_position_independent() -> None:
    (site,) = list_usdt_probes(str(usdt_library()))
    assert site.qualified_name == "usdtlib:mark" and site.semaphore_offset is not None
    probe = one(usdt_library(), "mark")
    assert len(probe.arguments) == 3 and probe.semaphore_offset == site.semaphore_offset


# -- $argN, compiled ---------------------------------------------------------------------------


def compile_word(word: str, probe: UsdtProbe) -> object:
    spec = parse_probe(word)
    fetchargs = spec.fetchargs or default_fetchargs(probe.arguments)
    return compile_fetchargs(fetchargs, word=word, probe_file_offset=probe.file_offset,
                             usdt_args=probe.arguments)


def test_untyped_arguments_take_the_notes_size_and_sign() -> None:
    probe = one(fixture_program("O2"), "ints")
    compiled = compile_word("usdt:x:ints a=$arg1 b=$arg2 c=$arg3 d=$arg4", probe)
    assert [field.type.name for field in compiled.fields] == [  # type: ignore[attr-defined]
        "s16", "u16", "s32", "u32"]


def test_default_fetchargs_read_every_readable_argument() -> None:
    six = one(fixture_program("O0"), "six")
    compiled = compile_word("usdt:x:six", six)
    assert [(f.name, f.type.name) for f in compiled.fields] == [  # type: ignore[attr-defined]
        ("arg1", "s8"), ("arg2", "u8"), ("arg3", "s16"), ("arg4", "u16"), ("arg5", "s32"),
        ("arg6", "s64")]
    indexed = one(fixture_program("O2"), "indexed")
    compiled = compile_word("usdt:x:indexed", indexed)
    assert [f.name for f in compiled.fields] == ["arg2"]  # type: ignore[attr-defined]
    assert compile_word("usdt:x:zero", one(fixture_program("O2"), "zero")).fields == []  # type: ignore[attr-defined]


def test_argument_beyond_the_probes_count() -> None:
    probe = one(fixture_program("O2"), "bytes")
    with pytest.raises(FetchArgError, match=r"\$arg3: this USDT probe has 2 arguments") as error:
        compile_word("usdt:x:bytes v=$arg3", probe)
    assert error.value.exit_status == 2 and error.value.column == len("usdt:x:bytes ")
    with pytest.raises(FetchArgError, match=r"has 1 argument\n"):
        compile_word("usdt:x:one v=$arg2", one(fixture_program("O2"), "one"))


def test_reading_an_untranslatable_argument_names_its_spec() -> None:
    probe = one(fixture_program("O2"), "indexed")
    with pytest.raises(FetchArgError) as error:
        compile_word("usdt:x:indexed v=$arg1", probe)
    assert probe.arguments[0].text in str(error.value)
    assert "does not guess" in str(error.value) and "^" in str(error.value)
    compile_word("usdt:x:indexed v=$arg2", probe)  # the other argument is fine


def test_a_type_wider_than_the_argument_is_refused() -> None:
    probe = one(fixture_program("O2"), "ints")
    with pytest.raises(FetchArgError, match=r"\$arg3 is a 4-byte argument \(-4@%ebx\)"):
        compile_word("usdt:x:ints v=$arg3:s64", probe)
    compiled = compile_word("usdt:x:ints v=$arg3:s8 w=$arg3:x32", probe)
    assert [f.type.name for f in compiled.fields] == ["s8", "x32"]  # type: ignore[attr-defined]


def test_a_string_argument_in_memory_is_loaded_then_followed() -> None:
    # 8@-48(%rbp): the pointer is at rbp-48; the string is where it points, one load further.
    in_memory = one(fixture_program("O0"), "wide")
    entries = compile_word("usdt:x:wide w=$arg3:string", in_memory).entries  # type: ignore[attr-defined]
    assert (entries[0]["nderef"], entries[0]["deref"][:2]) == (2, [-48, 0])
    # 8@%rsi: the register holds the pointer; the string is one load away.
    in_register = one(fixture_program("O2"), "wide")
    entries = compile_word("usdt:x:wide w=$arg3:string", in_register).entries  # type: ignore[attr-defined]
    assert (entries[0]["nderef"], entries[0]["deref"][:1]) == (1, [0])
    # +0($arg3):string spells the same thing explicitly.
    explicit = compile_word("usdt:x:wide w=+0($arg3):string", in_memory).entries  # type: ignore[attr-defined]
    assert explicit[0]["deref"][:2] == [-48, 0]


def test_tracer_refuses_a_semaphore_offset_on_a_usdt_word() -> None:
    from rawprobe import UsageError
    from rawprobe._tracer import Tracer

    program = fixture_program("O2")
    with Tracer() as tracer, pytest.raises(UsageError, match="semaphore comes from its note"):
        tracer.add(f"usdt:{program}:fixture:one(0x10)")
    with Tracer() as tracer:
        assert tracer.add(f"usdt:{program}:fixture:twice") == ["twice"]
        assert tracer.add(f"usdt:{program}:*:s[iy]*") == ["six", "symbols"]
