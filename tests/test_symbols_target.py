"""TARGET lookup: ld.so.cache parsing (all three layouts), library names, and process roots."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_symbols import PIE_FLAGS, SHARED_FLAGS
from fixtures_symbols.programs import C_LIBRARY
from helpers import CompileC

from rawprobe import TargetNotFoundError
from rawprobe._symbols import find_target, resolve_one
from rawprobe._symbols._ldcache import (
    LdCacheEntry,
    library_name_matches,
    lookup_library,
    parse_ld_cache,
)
from rawprobe._symbols._target import resolve_in_root, split_root

pytestmark = pytest.mark.usefixtures("private_symbol_cache")

X86_64 = 0x0303  # FLAG_ELF_LIBC6 | FLAG_X8664_LIB64
I386 = 0x0003


# -- building caches the way ldconfig lays them out (glibc sysdeps/generic/dl-cache.h) ----------


def _strings(pairs: list[tuple[int, str, str]]) -> tuple[bytes, list[tuple[int, int, int]]]:
    blob = b""
    offsets = []
    for flags, name, path in pairs:
        key = len(blob)
        blob += name.encode() + b"\0"
        value = len(blob)
        blob += path.encode() + b"\0"
        offsets.append((flags, key, value))
    return blob, offsets


def new_format(pairs: list[tuple[int, str, str]], hwcaps: list[int] | None = None) -> bytes:
    header_size, entry_size = 48, 24
    blob, offsets = _strings(pairs)
    start = header_size + entry_size * len(pairs)
    header = b"glibc-ld.so.cache" + b"1.1" + struct.pack("<IIB3xI12x", len(pairs), len(blob), 2, 0)
    assert len(header) == header_size
    entries = b"".join(
        struct.pack("<iIIIQ", flags, start + key, start + value, 0, (hwcaps or [0] * 99)[i])
        for i, (flags, key, value) in enumerate(offsets)
    )
    return header + entries + blob


def old_format(pairs: list[tuple[int, str, str]]) -> bytes:
    blob, offsets = _strings(pairs)
    header = b"ld.so-1.7.0" + b"\0" + struct.pack("<I", len(pairs))
    entries = b"".join(struct.pack("<iII", *entry) for entry in offsets)
    return header + entries + blob


def combined_format(old: list[tuple[int, str, str]], new: list[tuple[int, str, str]]) -> bytes:
    """ldconfig's "compat" layout: the new cache hides in the old one's string area, right after
    the old entries (8-byte aligned); old string offsets count from the end of the old entries."""
    entries_end = 16 + 12 * len(old)
    new_base = (entries_end + 7) & ~7
    new_part = new_format(new)
    old_strings_start = new_base + len(new_part)
    blob, offsets = _strings(old)
    shift = old_strings_start - entries_end
    header = b"ld.so-1.7.0" + b"\0" + struct.pack("<I", len(old))
    entries = b"".join(
        struct.pack("<iII", flags, key + shift, value + shift) for flags, key, value in offsets
    )
    return header + entries + b"\0" * (new_base - entries_end) + new_part + blob


def test_combined_layout_without_new_table_uses_old_strings() -> None:
    old = [(X86_64, "libold.so.1", "/old/libold.so.1")]
    data = bytearray(combined_format(old, [(X86_64, "libnew.so.1", "/new/libnew.so.1")]))
    data[32 : 32 + 5] = b"XXXXX"  # no new magic at 32: the old table and strings are used
    assert [(e.name, e.path) for e in parse_ld_cache(bytes(data))] == [
        ("libold.so.1", "/old/libold.so.1")
    ]


PAIRS = [
    (X86_64, "libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
    (X86_64, "libssl.so.1.1", "/usr/lib/x86_64-linux-gnu/libssl.so.1.1"),
    (X86_64, "libssl.so", "/usr/lib/x86_64-linux-gnu/libssl.so"),
    (I386, "libc.so.6", "/lib/i386-linux-gnu/libc.so.6"),
    (X86_64, "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
    (X86_64, "libcrypto.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
]


@pytest.mark.parametrize("layout", ["new", "old"])
def test_parse_layouts(layout: str) -> None:
    data = new_format(PAIRS) if layout == "new" else old_format(PAIRS)
    entries = parse_ld_cache(data)
    assert [(e.flags, e.name, e.path) for e in entries] == PAIRS


def test_combined_layout_prefers_the_new_table() -> None:
    old = [(X86_64, "libold.so.1", "/old/libold.so.1")]
    new = [(X86_64, "libnew.so.1", "/new/libnew.so.1")]
    data = combined_format(old, new)
    assert [e.name for e in parse_ld_cache(data)] == ["libnew.so.1"]


def test_damaged_caches_do_not_raise() -> None:
    data = new_format(PAIRS)
    for cut in range(0, len(data), 7):
        parse_ld_cache(data[:cut])
    assert parse_ld_cache(b"not a cache") == []
    bogus = bytearray(data)
    struct.pack_into("<I", bogus, 20, 10**9)  # nlibs far past the end
    assert parse_ld_cache(bytes(bogus)) == []


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-dev-zero"])
def test_ld_cache_that_is_not_a_file_is_ignored(tmp_path: Path, kind: str) -> None:
    # A container's /etc/ld.so.cache is its owner's choice: a FIFO blocked the open for ever,
    # /dev/zero was read until memory ran out. Run in a subprocess, with a timeout.
    (tmp_path / "etc").mkdir()
    cache = tmp_path / "etc" / "ld.so.cache"
    if kind == "fifo":
        os.mkfifo(cache)
    else:
        cache.symlink_to("/dev/zero")
    code = ("import sys; from rawprobe._symbols._ldcache import read_ld_cache; "
            "print(read_ld_cache(sys.argv[1]))")
    import sys

    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_lookup_rules() -> None:
    entries = parse_ld_cache(new_format(PAIRS))

    def found(name: str) -> str | None:
        entry = lookup_library(entries, name, X86_64)
        return entry.path if entry else None

    assert found("libc") == "/lib/x86_64-linux-gnu/libc.so.6"  # not the i386 one
    assert found("c") == "/lib/x86_64-linux-gnu/libc.so.6"
    assert found("libc.so.6") == "/lib/x86_64-linux-gnu/libc.so.6"
    assert found("libssl") == "/usr/lib/x86_64-linux-gnu/libssl.so.3"  # highest version
    assert found("libssl.so.1.1") == "/usr/lib/x86_64-linux-gnu/libssl.so.1.1"
    assert found("libcrypt") is None  # not libcrypto
    assert found("libz") is None


def test_hwcaps_entries_are_second_choice() -> None:
    pairs = [
        (X86_64, "libm.so.6", "/usr/lib/glibc-hwcaps/x86-64-v3/libm.so.6"),
        (X86_64, "libm.so.6", "/usr/lib/libm.so.6"),
    ]
    entries = parse_ld_cache(new_format(pairs, hwcaps=[(1 << 62) | 1, 0]))
    entry = lookup_library(entries, "libm", X86_64)
    assert entry == LdCacheEntry(X86_64, "libm.so.6", "/usr/lib/libm.so.6", 0)


def test_library_name_matching() -> None:
    assert library_name_matches("libc", "libc.so.6")
    assert library_name_matches("libc", "libc-2.31.so")
    assert not library_name_matches("libc", "libcrypto.so.3")
    assert not library_name_matches("libc", "libc-client.so")
    assert library_name_matches("libstdc++", "libstdc++.so.6")
    assert not library_name_matches("libc.so.6", "libc.so.7")


def test_host_cache_agrees_with_ldconfig() -> None:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if not os.path.exists(ldconfig) or not os.path.exists("/etc/ld.so.cache"):
        pytest.skip("no ldconfig or no /etc/ld.so.cache")
    listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    expected = set()
    for line in listing.splitlines()[1:]:
        name, _, rest = line.strip().partition(" (")
        kind, _, path = rest.partition(") => ")
        if kind.startswith("libc6,x86-64") and "hwcap" not in kind:
            expected.add((name, path))
    if not expected:
        pytest.skip("not an x86_64 host")
    parsed = {
        (entry.name, entry.path)
        for entry in parse_ld_cache(Path("/etc/ld.so.cache").read_bytes())
        if entry.flags == X86_64 and not entry.hwcap
    }
    assert parsed == expected


# -- find_target ------------------------------------------------------------------------------


def test_paths(tmp_path: Path) -> None:
    assert find_target("/bin/sh") == os.path.realpath("/bin/sh")
    with pytest.raises(TargetNotFoundError, match="no such file"):
        find_target(str(tmp_path / "missing"))
    with pytest.raises(TargetNotFoundError, match="directory"):
        find_target(str(tmp_path))
    with pytest.raises(TargetNotFoundError):
        find_target("")
    with pytest.raises(TargetNotFoundError, match="give the file's path"):
        find_target("libdoesnotexist")


def test_library_names() -> None:
    libc = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")
    if not os.path.exists(libc):
        pytest.skip("no x86_64 libc")
    for name in ("libc", "c", "libc.so.6"):
        assert find_target(name) == libc
    assert find_target("sh") == os.path.realpath(shutil.which("sh") or "/bin/sh")


def test_bare_file_name_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.out").write_bytes(b"\x7fELF")
    monkeypatch.chdir(tmp_path)
    assert find_target("a.out") == str(tmp_path / "a.out")


def test_own_process_mappings() -> None:
    pid = os.getpid()
    found = find_target("libc", pid=pid)
    assert found.startswith(f"/proc/{pid}/root/")
    assert os.path.samefile(found, "/lib/x86_64-linux-gnu/libc.so.6")
    shell = find_target("/bin/sh", pid=pid)
    assert shell.startswith(f"/proc/{pid}/root/") and os.path.samefile(shell, "/bin/sh")
    with pytest.raises(TargetNotFoundError, match="no process"):
        find_target("libc", pid=2**22 + 12345)


def test_resolve_in_root_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "libx.so.1").write_bytes(b"x")
    (root / "lib" / "libx.so").symlink_to("/lib/libx.so.1")  # absolute: inside the root
    (root / "usr").symlink_to("/")  # points at the container's root, not the host's
    assert resolve_in_root(str(root), "/lib/libx.so") == f"{root}/lib/libx.so.1"
    assert resolve_in_root(str(root), "/usr/usr/lib/libx.so") == f"{root}/lib/libx.so.1"
    assert resolve_in_root(str(root), "/lib/../lib/./libx.so.1") == f"{root}/lib/libx.so.1"
    (root / "loop").symlink_to("/loop")
    with pytest.raises(TargetNotFoundError, match="too many levels"):
        resolve_in_root(str(root), "/loop")
    assert split_root("/proc/12/root/lib/x") == ("/proc/12/root", "/lib/x")
    assert split_root("/proc/12/rootfs/x") == ("", "/proc/12/rootfs/x")


PAUSE_PROGRAM = r"""
#include <unistd.h>
int main(void) { for (;;) pause(); }
"""

PAUSE_WITH_LIBRARY = r"""
#include <stdio.h>
#include <unistd.h>
int lib_add(int a, int b);
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", lib_add(argc, 1));
    fflush(stdout);
    for (;;) pause();
}
"""


@pytest.fixture()
def chrooted_process(compile_c: CompileC, tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A process whose root directory is a private tree with its own ld.so.cache."""
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("needs root and chroot")
    try:
        sleeper = compile_c(PAUSE_PROGRAM, name="pause_static", flags=("-O1", "-static"))
    except subprocess.CalledProcessError:
        pytest.skip("static linking is not available")
    library = compile_c(C_LIBRARY, name="libfixture", flags=SHARED_FLAGS, suffix=".so")
    root = tmp_path / "container"
    (root / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(sleeper, root / "pause")
    shutil.copy(library, root / "lib" / "libfake.so.1")
    (root / "lib" / "libfake.so").symlink_to("/lib/libfake.so.1")
    from test_symbols_target import new_format as build_cache

    (root / "etc" / "ld.so.cache").write_bytes(
        build_cache([(X86_64, "libfake.so.1", "/lib/libfake.so")])
    )
    process = subprocess.Popen(["chroot", str(root), "/pause"])
    try:
        for _ in range(100):
            if (
                os.path.exists(f"/proc/{process.pid}/root/pause")
                and os.readlink(f"/proc/{process.pid}/root") != "/"
            ):
                break
            time.sleep(0.01)
        yield process.pid, root, library
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_container_library_through_its_own_cache(chrooted_process: tuple[int, Path, Path]) -> None:
    pid, root, library = chrooted_process
    found = find_target("libfake", pid=pid)
    assert found == f"/proc/{pid}/root/lib/libfake.so.1"
    assert os.path.samefile(found, root / "lib" / "libfake.so.1")
    assert find_target("/lib/libfake.so", pid=pid) == found
    with pytest.raises(TargetNotFoundError):
        find_target("/lib/x86_64-linux-gnu/libc.so.6", pid=pid)  # the host's, not the process's
    location = resolve_one(found, "lib_add")
    assert location.path == found
    assert location.file_offset == resolve_one(str(library), "lib_add").file_offset


def test_library_deleted_while_mapped(compile_c: CompileC, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("reading /proc/PID/map_files needs CAP_SYS_ADMIN")
    library = compile_c(C_LIBRARY, name="libfixture", flags=SHARED_FLAGS, suffix=".so")
    private = tmp_path / "libfixture.so"
    shutil.copy(library, private)
    program = compile_c(
        PAUSE_WITH_LIBRARY,
        name="pause_lib",
        flags=(
            *PIE_FLAGS,
            "-Wl,--no-as-needed",
            "-L",
            str(library.parent),
            "-lfixture",
            "-Wl,-rpath,$ORIGIN/lib",
        ),
    )
    run_dir = tmp_path / "run"
    (run_dir / "lib").mkdir(parents=True)
    shutil.copy(program, run_dir / "prog")
    shutil.copy(private, run_dir / "lib" / "libfixture.so")
    process = subprocess.Popen([str(run_dir / "prog")], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        process.stdout.readline()  # it has loaded the library
        (run_dir / "lib" / "libfixture.so").unlink()
        found = find_target("libfixture", pid=process.pid)
        assert f"/proc/{process.pid}/map_files/" in found
        assert (
            resolve_one(found, "lib_add").file_offset
            == resolve_one(str(library), "lib_add").file_offset
        )
    finally:
        process.kill()
        process.wait()
