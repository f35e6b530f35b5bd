"""rawprobe record and rawprobe report, end to end: what a recording decodes to is what attach
prints for the same probes, counts agree with attach --count, and addresses recorded while the
process lived are still named when its file is gone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from helpers import build_c, run_rawprobe

ENTRY = "p:{prog}:add a=%di:s32 b=%si:s32"
RETURN = "r:{prog}:add ret=$retval:s32"


def values(lines: str) -> list[str]:
    """Each line without its time, pid and comm: event and fields."""
    return [line.split(" ", 3)[3] for line in lines.splitlines() if line.strip()]


def test_a_recording_decodes_to_what_attach_prints(add_program: Path, tmp_path: Path) -> None:
    prog = str(add_program)
    words = [ENTRY.format(prog=prog), RETURN.format(prog=prog)]
    recording = tmp_path / "add.rprec"
    recorded = run_rawprobe("record", "-o", str(recording), *words, "--", prog, "200",
                            check_status=0)
    assert "rawprobe: 400 events, 0 lost" in recorded.stderr, recorded.stderr
    assert os.stat(recording).st_mode & 0o777 == 0o600
    attached = run_rawprobe("attach", *words, "--", prog, "200", check_status=0)
    report = run_rawprobe("report", str(recording), check_status=0)
    assert values(report.stdout) == values(attached.stdout)
    assert "rawprobe: 400 events, 0 lost when recorded" in report.stderr

    as_json = [json.loads(line) for line in run_rawprobe(
        "report", "--json", "-n", "2", str(recording), check_status=0).stdout.splitlines()]
    assert [o["event"] for o in as_json[:2]] == ["add", "add__return"]
    assert as_json[0]["args"] == {"a": 1, "b": 2} and as_json[1]["args"] == {"ret": 3}
    assert as_json[-1]["summary"]["events"] == 2 and as_json[-1]["summary"]["lost"] == 0

    counted = json.loads(run_rawprobe("report", "--json", "--count", str(recording),
                                      check_status=0).stdout)
    live = json.loads(run_rawprobe("attach", "--json", "--count", *words, "--", prog, "200",
                                   check_status=0).stdout.splitlines()[0])
    assert counted == live


# Addresses are described through the process's mappings, read once its first records are:
# the process lingers a moment after its calls (a process gone by then shows addresses).
LINGER = r"""
#include <unistd.h>
__attribute__((noinline)) int add(int a, int b) { return a + b; }
int main(void) { int s = 0; for (int i = 0; i < 3; i++) s += add(i, 2); usleep(300000);
                 return s == 0; }
"""


def test_addresses_are_named_on_another_host(tmp_path: Path) -> None:
    # The program is copied, recorded, then deleted: the report has only the recording.
    prog = tmp_path / "main"
    shutil.copy2(build_c(LINGER, name="main", flags=("-O0",)), prog)
    recording = tmp_path / "where.rprec"
    run_rawprobe("record", "-o", str(recording), f"p:{prog}:add where=+0(%sp):symbol",
                 "--stack", "--", str(prog), check_status=0)
    prog.unlink()
    lines = [json.loads(line) for line in run_rawprobe(
        "report", "--json", str(recording), check_status=0).stdout.splitlines()]
    events = [line for line in lines if "event" in line]
    assert len(events) == 3
    for event in events:
        assert event["args"]["where"].startswith("main+0x"), event
        assert any(frame.startswith("main") for frame in event["stack"]), event


def test_record_refuses_what_it_cannot_keep(add_program: Path, tmp_path: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("record", "-o", str(tmp_path / "x"), "--count",
                          ENTRY.format(prog=prog), "--", prog)
    assert result.returncode == 2 and "--count" in result.stderr
