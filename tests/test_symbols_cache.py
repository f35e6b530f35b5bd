"""The symbol index format and the on-disk cache: round trips, invalidation, and the rules that
keep root from trusting a cache someone else could have written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures_symbols import PIE_FLAGS
from fixtures_symbols.programs import C_PROGRAM
from helpers import CompileC

from rawprobe._symbols import clear_memory, resolve_one
from rawprobe._symbols._cache import SymbolCache, cache_directory
from rawprobe._symbols._encode import IndexData, IndexSymbol, encode_index
from rawprobe._symbols._index import IndexFormatError, SymbolIndex


@pytest.fixture(scope="module")
def program(compile_c: CompileC) -> Path:
    return compile_c(C_PROGRAM, name="cached", flags=PIE_FLAGS)


def _sample_index() -> bytes:
    data = IndexData()
    data.path = "/x/libsample.so"
    data.key = (1, 2, 3, 4, 5)
    data.build_id = "abcd"
    data.machine = "x86_64"
    data.dependencies = [("/usr/lib/debug/.build-id/ab/cd.debug", (-1, -1, -1, -1, -1))]
    data.segments = [(0x1000, 0x200, 0x1000, 0x200, 5)]
    data.sections = [(".text", 0x1000, 0x1000, 0x200, 6, 1)]
    data.needed = ["libc.so.6"]
    data.undefined = [("puts", "libc.so.6")]
    data.debug_sources = [("build-id", "/usr/lib/debug/.build-id/ab/cd.debug")]
    data.symbols = [
        IndexSymbol("beta", "V2", True, 0x1100, 16, 0, 0, 0),
        IndexSymbol("alpha", "", False, 0x1000, 32, 0, 2, 1),
        IndexSymbol("alpha_alias", "", False, 0x1000, 32, 1, 1, 3),
        IndexSymbol("_ZN1a1fEv", "", False, 0x1180, 8, 0, 0, 1, demangled="a::f()"),
    ]
    return encode_index(data)


def test_index_round_trip() -> None:
    index = SymbolIndex.from_bytes(_sample_index())
    assert index.path == "/x/libsample.so" and index.key == (1, 2, 3, 4, 5)
    assert index.count == 4
    assert index.names() == ["alpha", "alpha_alias", "beta", "_ZN1a1fEv"]  # by address
    (beta,) = index.find_name("beta")
    entry = index.entry(beta)
    assert (entry.version, entry.default_version, entry.address, entry.source) == (
        "V2",
        True,
        0x1100,
        "dynsym",
    )
    assert entry.versioned_name == "beta@@V2"
    (alpha,) = index.find_name("alpha")
    assert index.same_address(alpha) == [0, 1]
    assert index.entry(1).kind == "ifunc" and index.entry(1).source == "build-id"
    assert index.entry(0).binding == "local"
    assert index.find_demangled("a::f()") == [3]
    assert index.find_demangled_function("a::f") == [3]
    assert index.find_demangled_function("f") == []
    assert index.find_name("alph") == [] and index.find_name("") == []
    assert index.undefined == {"puts": "libc.so.6"}
    assert [entry.name for entry in index.entries()] == index.names()


def test_damaged_index_is_rejected() -> None:
    data = _sample_index()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(IndexFormatError):
            SymbolIndex.from_bytes(data[:cut])
    for position in range(0, len(data), 5):
        damaged = bytearray(data)
        damaged[position] ^= 0x41
        with pytest.raises(IndexFormatError):
            SymbolIndex.from_bytes(bytes(damaged))


def test_cache_directory_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", "/some/where")
    assert cache_directory() == "/some/where"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", "")
    assert cache_directory() is None
    monkeypatch.delenv("RAWPROBE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert cache_directory() == "/xdg/rawprobe"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", "/home/someone")
    assert cache_directory() == "/home/someone/.cache/rawprobe"


def test_created_private_and_written_atomically(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "cache"
    cache = SymbolCache(str(directory))
    assert cache.write("entry.idx", b"payload")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "entry.idx").stat().st_mode) == 0o600
    assert cache.read("entry.idx") == b"payload"
    assert sorted(os.listdir(directory)) == ["entry.idx"]  # no temporary files left behind


def test_old_entries_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rawprobe._symbols._cache as cache_module

    monkeypatch.setattr(cache_module, "MAX_ENTRIES", 3)
    cache = SymbolCache(str(tmp_path / "c"))
    for number in range(6):
        assert cache.write(f"{number}.idx", b"x")
        os.utime(tmp_path / "c" / f"{number}.idx", ns=(number * 10**9, number * 10**9))
    assert sorted(os.listdir(tmp_path / "c")) == ["3.idx", "4.idx", "5.idx"]


def test_untrusted_directories_are_ignored(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    cache = SymbolCache(str(open_dir))
    assert not cache.usable and "writable by group or others" in cache.reason
    assert not cache.write("x.idx", b"x") and cache.read("x.idx") is None

    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert not SymbolCache(str(link)).usable

    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        foreign_cache = SymbolCache(str(foreign))
        assert not foreign_cache.usable and "owned by uid 65534" in foreign_cache.reason


def test_cache_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rawprobe._symbols import cache_status

    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(tmp_path / "ok"))
    assert cache_status() == (str(tmp_path / "ok"), True, "")
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", "")
    directory, usable, reason = cache_status()
    assert directory is None and not usable and "disabled" in reason


def test_untrusted_entries_are_ignored(tmp_path: Path) -> None:
    cache = SymbolCache(str(tmp_path / "c"))
    assert cache.write("a.idx", b"data")
    entry = tmp_path / "c" / "a.idx"
    entry.chmod(0o666)
    assert cache.read("a.idx") is None
    entry.chmod(0o600)
    assert cache.read("a.idx") == b"data"
    (tmp_path / "c" / "b.idx").symlink_to(entry)
    assert cache.read("b.idx") is None  # O_NOFOLLOW
    if os.geteuid() == 0:
        os.chown(entry, 65534, 65534)
        assert cache.read("a.idx") is None


def test_fifo_entry_is_ignored_without_blocking(tmp_path: Path) -> None:
    # In a subprocess with a timeout: the open of a FIFO would block this test for ever.
    directory = tmp_path / "c"
    directory.mkdir(mode=0o700)
    os.mkfifo(directory / "a.idx", 0o600)
    code = ("import sys; from rawprobe._symbols._cache import SymbolCache; "
            "print(SymbolCache(sys.argv[1]).read('a.idx'))")
    result = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "None", result.stderr


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.idx"))


def test_resolution_uses_and_refreshes_the_cache(
    program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(directory))
    copy = tmp_path / "prog"
    copy.write_bytes(program.read_bytes())
    clear_memory()
    first = resolve_one(str(copy), "add")
    (entry,) = _entries(directory)
    stale_key = SymbolIndex.from_bytes(entry.read_bytes()).key
    clear_memory()
    resolve_one(str(copy), "add")
    assert SymbolIndex.from_bytes(entry.read_bytes()).key == stale_key  # served, not rebuilt
    # Rewritten in place with its mtime put back: same inode, size and mtime; only ctime
    # tells, and that is enough to distrust the entry.
    before = copy.stat()
    copy.write_bytes(copy.read_bytes())
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    clear_memory()
    again = resolve_one(str(copy), "add")
    assert again.file_offset == first.file_offset
    assert [p.name for p in _entries(directory)] == [entry.name]  # same dev and inode
    fresh_key = SymbolIndex.from_bytes(entry.read_bytes()).key
    assert fresh_key[:4] == stale_key[:4] and fresh_key[4] != stale_key[4]


def test_entry_of_another_file_is_never_trusted(
    compile_c: CompileC, program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(directory))
    other = compile_c(C_PROGRAM.replace("x * 3", "x * 5"), name="other", flags=PIE_FLAGS)
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_bytes(program.read_bytes())
    two.write_bytes(other.read_bytes())
    clear_memory()
    resolve_one(str(one), "add")
    expected = resolve_one(str(two), "helper").file_offset
    entry_one, entry_two = (directory / p.name for p in _entries(directory))
    # Plant one file's index under the other's name: the key inside does not match.
    os.replace(entry_one, entry_two)
    clear_memory()
    assert resolve_one(str(two), "helper").file_offset == expected


def test_garbage_entry_is_rebuilt(
    program: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(directory))
    clear_memory()
    expected = resolve_one(str(program), "add").file_offset
    (entry,) = _entries(directory)
    entry.write_bytes(b"RPSYMIDX garbage")
    clear_memory()
    assert resolve_one(str(program), "add").file_offset == expected
    assert SymbolIndex.from_bytes(entry.read_bytes()).count > 0


def test_warm_resolution_does_not_import_pyelftools(program: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from rawprobe._symbols import resolve_one
        location = resolve_one({str(program)!r}, "add")
        print(location.file_offset, "elftools" in sys.modules, "re" in sys.modules)
        """
    )
    env = {**os.environ, "RAWPROBE_CACHE_DIR": str(tmp_path / "cache")}
    cold = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    warm = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert cold[0] == warm[0]
    assert cold[1] == "True"  # the first run had to read the ELF
    assert warm[1:] == ["False", "False"]
