"""Fuzzing: damaged ELF files, cache entries and ld.so.cache files must never crash the resolver.

Only :class:`rawprobe.RawprobeError` subclasses may come out of the public functions, whatever
the bytes; the decoders of the index and of ld.so.cache must reject or survive anything.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from helpers import CompileC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe import RawprobeError
from rawprobe._symbols import clear_memory, describe_target, list_functions, resolve_location
from rawprobe._symbols._index import IndexFormatError, SymbolIndex
from rawprobe._symbols._ldcache import lookup_library, parse_ld_cache

SMALL_PROGRAM = r"""
#include <stdio.h>
__attribute__((noinline)) static int helper(int x) { return x * 3; }
__attribute__((noinline)) int add(int a, int b) { return a + helper(b); }
int main(int argc, char **argv) { (void)argv; printf("%d\n", add(argc, 1)); return 0; }
"""

_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class _Sample(bytes):
    """The fixture ELF's bytes, with a short repr for Hypothesis's failure reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of ELF>"


@pytest.fixture(scope="module")
def elf_bytes(compile_c: CompileC) -> bytes:
    program = compile_c(SMALL_PROGRAM, name="fuzzme", flags=("-O0", "-fPIE", "-pie"))
    return _Sample(program.read_bytes())


@pytest.fixture(scope="module")
def work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rawprobe-fuzz-"))


def _hot_offsets(data: bytes) -> list[int]:
    """Byte offsets where damage matters most: ELF header, program and section headers."""
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    (phnum,) = struct.unpack_from("<H", data, 0x38)
    (shnum,) = struct.unpack_from("<H", data, 0x3C)
    spots = list(range(64))
    spots += range(phoff, min(len(data), phoff + 56 * phnum))
    spots += range(shoff, min(len(data), shoff + 64 * shnum))
    return spots


def _exercise(path: Path) -> None:
    clear_memory()
    for action in (
        lambda: list_functions(str(path), use_cache=False, debug_root="/nonexistent"),
        lambda: resolve_location(str(path), "add", use_cache=False, debug_root="/nonexistent"),
        lambda: resolve_location(str(path), "0x1000", use_cache=False, debug_root="/nonexistent"),
        lambda: describe_target(str(path), use_cache=False, debug_root="/nonexistent"),
    ):
        with contextlib.suppress(RawprobeError):
            action()


@_SETTINGS
@given(data=st.data())
def test_mutated_elf(elf_bytes: bytes, work_dir: Path, data: st.DataObject) -> None:
    hot = _hot_offsets(elf_bytes)
    flips = data.draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(hot), st.integers(0, len(elf_bytes) - 1)),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=8,
        )
    )
    mutated = bytearray(elf_bytes)
    for position, value in flips:
        mutated[position] = value
    target = work_dir / "mutated"
    target.write_bytes(bytes(mutated))
    _exercise(target)


@_SETTINGS
@given(length=st.integers(0, 70_000))
def test_truncated_elf(elf_bytes: bytes, work_dir: Path, length: int) -> None:
    target = work_dir / "truncated"
    target.write_bytes(elf_bytes[: length % (len(elf_bytes) + 1)])
    _exercise(target)


@_SETTINGS
@given(payload=st.binary(max_size=512))
def test_random_bytes_after_elf_magic(work_dir: Path, payload: bytes) -> None:
    target = work_dir / "random"
    target.write_bytes(b"\x7fELF\x02\x01\x01" + payload)
    _exercise(target)


@pytest.fixture(scope="module")
def index_bytes(elf_bytes: bytes, work_dir: Path) -> bytes:
    from rawprobe._symbols._build import build_index_data
    from rawprobe._symbols._encode import encode_index

    source = work_dir / "indexed"
    source.write_bytes(elf_bytes)
    return _Sample(encode_index(build_index_data(str(source), ())))


@_SETTINGS
@given(data=st.data())
def test_mutated_index_with_valid_checksum(index_bytes: bytes, data: st.DataObject) -> None:
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(20, len(index_bytes) - 1), st.integers(0, 255)),
            min_size=1,
            max_size=6,
        )
    )
    mutated = bytearray(index_bytes)
    for position, value in flips:
        mutated[position] = value
    # Recompute the CRC so the structural checks, not the checksum, are what is tested.
    struct.pack_into("<I", mutated, 12, zlib.crc32(bytes(mutated[20:])))
    try:
        index = SymbolIndex.from_bytes(bytes(mutated))
    except IndexFormatError:
        return
    index.find_name("add")
    index.find_demangled("x")
    for record in range(min(index.count, 50)):
        index.entry(record)
        index.same_address(record)
    list(index.entries())


@_SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_index_bytes(data: bytes) -> None:
    with pytest.raises(IndexFormatError):
        SymbolIndex.from_bytes(b"RPSYMIDX" + data)


@_SETTINGS
@given(
    data=st.binary(max_size=1024),
    prefix=st.sampled_from([b"", b"glibc-ld.so.cache1.1", b"ld.so-1.7.0\0"]),
)
def test_random_ld_cache(data: bytes, prefix: bytes) -> None:
    entries = parse_ld_cache(prefix + data)
    lookup_library(entries, "libc", 0x0303)
