"""``rawprobe list --usdt``: the table and the JSON array, checked against readelf."""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ADD_SOURCE, build_c, run_rawprobe
from test_usdt_programs import (
    fixture_program,
    library_user,
    readelf_notes,
    semaphore_program,
    usdt_library,
)

from rawprobe._usdt import UsdtNotFoundError
from rawprobe.cli._usdt import run_list_usdt

PYTHON = Path("/usr/bin/python3.11")


def listing(target: str, pattern: str | None = None, *, json_output: bool = False,
            pid: int | None = None) -> str:
    out = io.StringIO()
    assert run_list_usdt(target, pattern, pid=pid, json_output=json_output, out=out) == 0
    return out.getvalue()


def test_table_has_one_line_per_site() -> None:
    path = fixture_program("O2")
    lines = listing(str(path)).splitlines()
    assert lines[0].split() == ["PROVIDER", "NAME", "FILE_OFFSET", "ADDRESS",
                                "SEMAPHORE_ADDRESS", "SEMAPHORE_FILE_OFFSET", "ARGUMENTS"]
    notes = readelf_notes(path)
    assert len(lines) == 1 + len(notes)
    for line, note in zip(lines[1:], notes, strict=True):
        cells = line.split(None, 6)
        assert cells[:2] == [note["Provider"], note["Name"]]
        assert int(cells[3], 16) == int(note["Location"], 16)
        assert cells[4:6] == ["-", "-"]
        assert (cells[6] if len(cells) > 6 else "") == note["Arguments"]
    # columns line up: every row starts its NAME where the header does
    name_column = lines[0].index("NAME")
    assert all(line[name_column - 2 : name_column] == "  " for line in lines)


def test_table_shows_semaphores_and_filters_by_glob() -> None:
    lines = listing(str(semaphore_program()), "tick").splitlines()
    assert len(lines) == 2
    provider, name, _file_offset, _address, semaphore, semaphore_offset, arguments = (
        lines[1].split(None, 6))
    assert (provider, name) == ("guarded", "tick")
    note = readelf_notes(semaphore_program())[0]
    assert arguments == note["Arguments"]
    # The semaphore's address, as readelf prints it beside the probe's, and its file offset
    # (what the kernel is handed) in a column of its own.
    assert int(semaphore, 16) == int(note["Semaphore"], 16)
    assert semaphore_offset.startswith("0x") and int(semaphore_offset, 16) > 0
    assert listing(str(fixture_program("O2")), "other:*").splitlines()[1].split()[:2] == [
        "other", "shared"]


def test_json_array() -> None:
    path = semaphore_program()
    objects = json.loads(listing(str(path), json_output=True))
    (site,) = objects
    note = readelf_notes(path)[0]
    assert site["provider"] == "guarded" and site["name"] == "tick"
    assert site["address"] == int(note["Location"], 16)
    assert site["semaphore_address"] == int(note["Semaphore"], 16)
    assert isinstance(site["file_offset"], int) and isinstance(site["semaphore_offset"], int)
    assert site["size"] == 0 and site["source"] == "usdt"
    assert site["arguments"] == note["Arguments"].split()
    assert site["path"] == str(path)
    without = json.loads(listing(str(fixture_program("O2")), "zero", json_output=True))
    assert without[0]["semaphore_offset"] is None and without[0]["arguments"] == []


def test_library_by_name_in_a_running_process() -> None:
    process = subprocess.Popen([str(library_user()), "1", "3000"])
    try:
        deadline = time.monotonic() + 5
        while "libusdtfix" not in Path(f"/proc/{process.pid}/maps").read_text():
            assert time.monotonic() < deadline, "the library was never mapped"
            time.sleep(0.02)
        objects = json.loads(listing("libusdtfix", json_output=True, pid=process.pid))
    finally:
        process.kill()
        process.wait()
    assert [(o["provider"], o["name"]) for o in objects] == [("usdtlib", "mark")]
    assert objects[0]["path"].endswith("libusdtfix.so")
    assert objects[0]["file_offset"] == json.loads(
        listing(str(usdt_library()), json_output=True))[0]["file_offset"]


def test_python_lists_its_markers() -> None:
    if not PYTHON.exists():
        pytest.skip("no /usr/bin/python3.11 on this host")
    names = [line.split()[1] for line in listing(str(PYTHON)).splitlines()[1:]]
    assert "function__entry" in names and "function__return" in names


def test_errors_are_raised_not_printed() -> None:
    program = build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))
    with pytest.raises(UsdtNotFoundError, match="rawprobe list"):
        listing(str(program))


def test_a_glob_matching_nothing_is_an_empty_listing() -> None:
    path = str(fixture_program("O2"))
    for json_output in (False, True):
        out = io.StringIO()
        assert run_list_usdt(path, "nothing*", pid=None, json_output=json_output, out=out) == 1
        if json_output:
            assert json.loads(out.getvalue()) == []
        else:
            assert "no USDT probe 'nothing*'" in out.getvalue()
            assert "Its probes are: fixture:bytes" in out.getvalue()


def test_through_the_command_line() -> None:
    path = str(fixture_program("O2"))
    result = run_rawprobe("list", "--usdt", path, "fixture:twice", "--json", check_status=0)
    assert [(o["name"], o["source"]) for o in json.loads(result.stdout)] == [
        ("twice", "usdt"), ("twice", "usdt")]
    result = run_rawprobe("list", "--usdt", path, "zz*", check_status=1)
    assert "no USDT probe 'zz*'" in result.stdout
    program = str(build_c(ADD_SOURCE, name="main", flags=("-O0", "-g")))
    result = run_rawprobe("list", "--usdt", program, check_status=2)
    assert result.stderr.startswith("rawprobe: error: ") and "has no USDT probes" in \
        result.stderr
