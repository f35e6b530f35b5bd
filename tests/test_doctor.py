"""rawprobe doctor and probes: the parsers on fixture text (no root), and doctor on this host."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from helpers import require_kernel_tracing, run_rawprobe

from rawprobe._census import ActiveProbe, parse_fdinfo, scan_descriptors, symbol_at
from rawprobe._doctor import (
    Check,
    can_trace,
    parse_capabilities,
    parse_kernel_config,
    parse_kernel_version,
    parse_lockdown,
)
from rawprobe._host.privileges import CAP_BPF, CAP_PERFMON
from rawprobe.cli._probes import format_table

EVERY_CHECK = {
    "kernel", "kernel-config", "uprobe-pmu", "btf", "privileges", "perf-event-paranoid",
    "unprivileged-bpf", "lockdown", "tracefs", "syscall-tracepoints", "libbpf", "bpf-ringbuf",
    "bpf-cookie", "uprobe-multi", "backend-bpf", "backend-tracefs",
}


def test_kernel_versions() -> None:
    assert parse_kernel_version("6.18.44-fc-v657") == (6, 18, 44)
    assert parse_kernel_version("5.15.0-105-generic") == (5, 15, 0)
    assert parse_kernel_version("6.8-rc1\n") == (6, 8, 0)
    assert parse_kernel_version("4.18.0-147.3.1.el8_1.x86_64") < (5, 15)
    with pytest.raises(ValueError):
        parse_kernel_version("linux")


def test_kernel_config() -> None:
    config = parse_kernel_config(
        "#\n# Automatically generated file\nCONFIG_UPROBES=y\nCONFIG_BPF_EVENTS=m\n"
        "# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_DEFAULT_HOSTNAME=\"(none)\"\n"
    )
    assert config == {"CONFIG_UPROBES": "y", "CONFIG_BPF_EVENTS": "m",
                      "CONFIG_DEBUG_INFO_BTF": "n", "CONFIG_DEFAULT_HOSTNAME": "(none)"}


def test_capabilities_and_lockdown() -> None:
    status = ("Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t000000c000000000\n"
              "CapEff:\t000000c000000000\n")
    caps = parse_capabilities(status)
    assert caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1 and not caps & 1
    assert parse_capabilities("Name:\tx\n") == 0
    assert parse_lockdown("[none] integrity confidentiality\n") == "none"
    assert parse_lockdown("none integrity [confidentiality]") == "confidentiality"


def test_fdinfo_of_a_bpf_link() -> None:
    text = ("pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nlink_type:\tperf\n"
            "link_id:\t2812\nprog_tag:\tb1e2a8a83ba4fc1e\nprog_id:\t7836\n")
    info = parse_fdinfo(text)
    assert info["link_id"] == "2812" and info["prog_id"] == "7836"
    multi = parse_fdinfo("link_type:\tuprobe_multi\nlink_id:\t9\noffset:\t0xa69ed7\n"
                         "offset:\t0xa69ee2\n")
    assert multi["offset"] == "0xa69ed7"  # the first of repeated keys


def test_scan_descriptors_on_a_fake_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, fds in {"42": {"3": "anon_inode:bpf_link", "4": "anon_inode:[perf_event]",
                            "5": "/dev/null"}, "7": {"9": "anon_inode:bpf_link"}}.items():
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "fdinfo").mkdir()
        (proc / pid / "comm").write_text(f"proc{pid}\n")
        for fd, target in fds.items():
            os.symlink(target, proc / pid / "fd" / fd)
            (proc / pid / "fdinfo" / fd).write_text(f"pos:\t0\nlink_id:\t{100 + int(fd)}\n")
    (proc / "self").mkdir()
    found = scan_descriptors(str(proc))
    assert found.link_owners == {103: [42], 109: [7]}
    assert found.perf_events == [(42, 4)]
    assert found.comms == {7: "proc7", 42: "proc42"}


def test_symbol_at_names_the_containing_function(add_program: Path) -> None:
    from rawprobe._symbols import list_functions

    (add,) = list_functions(str(add_program), "add")
    assert symbol_at(str(add_program), add.file_offset) == "add"
    assert symbol_at(str(add_program), add.file_offset + 4) == "add+0x4"
    assert symbol_at("/no/such/file", 0x10) is None


def test_probes_table() -> None:
    rows = [
        ActiveProbe("tracefs", "/bin/bash", 0x8D000, True, symbol="readline", group="g",
                    event="readline__return", stale=True),
        ActiveProbe("bpf-perf", "/usr/lib/libc.so.6", 0x98930, False, symbol=None, pid=42,
                    comm="rawprobe", link_id=7, prog_id=9, prog_name="rp_entry", cookie=1),
    ]
    lines = format_table(rows)
    assert lines[0].split() == ["KIND", "PID", "COMM", "TYPE", "SYMBOL", "PLACE", "DETAIL"]
    assert lines[1].split()[:6] == ["tracefs", "-", "-", "return", "readline",
                                    "/bin/bash:0x8d000"]
    assert "probes --clean" in lines[1]
    assert lines[2].split()[:6] == ["bpf-perf", "42", "rawprobe", "entry", "?",
                                    "/usr/lib/libc.so.6:0x98930"]
    assert lines[2].endswith("link 7 prog 9 (rp_entry) cookie 0x1")
    assert len({line.index("PLACE") if "PLACE" in line else line.index("/") for line in lines}) == 1


def test_can_trace_needs_one_backend() -> None:
    def checks(bpf: str, tracefs: str) -> list[Check]:
        return [Check("kernel", "ok", ""), Check("backend-bpf", bpf, ""),
                Check("backend-tracefs", tracefs, "")]

    assert can_trace(checks("ok", "fail")) and can_trace(checks("fail", "ok"))
    assert not can_trace(checks("fail", "fail"))


def test_bpf_instructions_are_encoded_as_the_kernel_reads_them() -> None:
    from rawprobe._sys.features import _BPF_CALL, _instruction

    assert _instruction(_BPF_CALL, 174) == struct.pack("<BBhi", 0x85, 0, 0, 174)
    assert _instruction(0xB7, 5, dst=2, src=1) == bytes([0xB7, 0x12, 0, 0, 5, 0, 0, 0])


def test_doctor_on_this_host() -> None:
    require_kernel_tracing()
    result = run_rawprobe("doctor", "--json", check_status=0)
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} == EVERY_CHECK
    for check in report["checks"]:
        assert check["status"] in ("ok", "warn", "fail")
        assert isinstance(check["detail"], str) and check["detail"]
        if check["status"] != "ok":
            assert check["fix"], check
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["backend-bpf"] == "ok" and statuses["backend-tracefs"] == "ok"
    text = run_rawprobe("doctor", check_status=0)
    assert "rawprobe can trace here" in text.stderr
    assert [line.split()[1] for line in text.stdout.splitlines()
            if not line.lstrip().startswith("fix:")] == [c["name"] for c in report["checks"]]
