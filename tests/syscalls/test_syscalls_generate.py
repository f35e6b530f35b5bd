"""The generated tables: the committed _table.py is what the generator makes of the headers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import skip_or_fail

from rawprobe._syscalls import _generate, _table
from rawprobe._syscalls._constants import constant_set, errno_name, syscall_numbers

UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


@pytest.fixture(scope="module")
def generated_text() -> str:
    """What the generator makes of this machine's headers (made once: it takes seconds)."""
    try:
        return _generate.generate_table()
    except _generate.HeadersMissingError as error:
        skip_or_fail(str(error))
        raise AssertionError("unreachable") from error


def test_committed_table_is_what_the_generator_makes(generated_text: str) -> None:
    committed = _generate.TABLE_PATH.read_text()
    assert generated_text == committed, (
        "rawprobe/_syscalls/_table.py differs from what the installed headers give; run "
        "'python -m rawprobe._syscalls._generate' and commit the result"
    )


def test_generator_check_mode_agrees(
    tmp_path: Path, generated_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_generate, "generate_table", lambda: generated_text)
    output = tmp_path / "table.py"
    assert _generate.main(["--output", str(output)]) == 0
    assert _generate.main(["--output", str(output), "--check"]) == 0
    output.write_text(output.read_text() + "# edited\n")
    assert _generate.main(["--output", str(output), "--check"]) == 1


def test_x86_64_numbers_match_unistd_64_h_read_as_text() -> None:
    """An independent reading of the header (no preprocessor) gives the same numbers."""
    if not UNISTD_64.exists():
        skip_or_fail(f"{UNISTD_64} is missing; apt-get install linux-libc-dev")
    defined = {match.group(1): int(match.group(2)) for match in
               re.finditer(r"^#define __NR_(\w+)\s+(\d+)$", UNISTD_64.read_text(), re.M)}
    assert dict(syscall_numbers("x86_64").by_name) == defined


@pytest.mark.parametrize(("name", "number"), [
    # include/uapi/asm-generic/unistd.h, as arm64 uses it.
    ("io_setup", 0), ("openat", 56), ("close", 57), ("read", 63), ("write", 64),
    ("newfstatat", 79), ("fstat", 80), ("exit_group", 94), ("clone", 220), ("execve", 221),
    ("mmap", 222), ("renameat", 38), ("clone3", 435),
])
def test_aarch64_numbers(name: str, number: int) -> None:
    assert syscall_numbers("aarch64").by_name[name] == number


def test_aarch64_has_no_legacy_calls() -> None:
    names = syscall_numbers("aarch64").by_name
    assert "open" not in names and "stat" not in names and "fork" not in names


def test_flags_that_differ_by_architecture() -> None:
    # arch/arm64/include/uapi/asm/fcntl.h moves four open flags.
    x86 = dict(constant_set("open_flags", "x86_64"))
    arm = dict(constant_set("open_flags", "aarch64"))
    assert (x86["O_DIRECTORY"], x86["O_NOFOLLOW"]) == (0o200000, 0o400000)
    assert (arm["O_DIRECTORY"], arm["O_NOFOLLOW"]) == (0o40000, 0o100000)
    assert x86["O_CLOEXEC"] == arm["O_CLOEXEC"] == 0o2000000
    assert "MAP_32BIT" in dict(constant_set("mmap_flags", "x86_64"))
    assert "MAP_32BIT" not in dict(constant_set("mmap_flags", "aarch64"))
    assert "PROT_BTI" in dict(constant_set("mmap_prot", "aarch64"))


def test_sets_identical_everywhere_are_written_once() -> None:
    for machine_sets in _table.PER_ARCH.values():
        assert "errno" not in machine_sets and "signals" not in machine_sets
    assert "syscalls" not in _table.COMMON


def test_aliases_are_left_out_and_composites_kept() -> None:
    errnos = dict(constant_set("errno", "x86_64"))
    assert "EWOULDBLOCK" not in errnos and errnos["EAGAIN"] == 11
    assert errno_name(2) == "ENOENT" and errno_name(11) == "EAGAIN"
    open_flags = dict(constant_set("open_flags", "x86_64"))
    assert "O_NDELAY" not in open_flags
    assert open_flags["O_SYNC"] == open_flags["O_DSYNC"] | 0o4000000
    signals = dict(constant_set("signals", "x86_64"))
    assert signals["SIGABRT"] == 6 and "SIGIOT" not in signals and "SIGPOLL" not in signals
    at_flags = dict(constant_set("at_flags", "x86_64"))
    assert at_flags["AT_REMOVEDIR"] == at_flags["AT_EACCESS"] == 0x200
    assert at_flags["AT_FDCWD"] == -100


def test_libc_sets() -> None:
    assert dict(constant_set("access_modes")) == {"R_OK": 4, "W_OK": 2, "X_OK": 1, "F_OK": 0}
    families = dict(constant_set("socket_families"))
    assert families["AF_UNIX"] == 1 and "AF_LOCAL" not in families
    assert dict(constant_set("socket_types"))["SOCK_CLOEXEC"] == 0o2000000


def test_sources_are_recorded() -> None:
    assert set(_table.SOURCES) == {"x86_64", "aarch64", "libc"}
    assert all("Linux" in _table.SOURCES[arch] for arch in ("x86_64", "aarch64"))
