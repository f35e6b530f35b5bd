"""The structs shared with the BPF programs agree with the BTF of the built object."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import construct as c
import pytest
from helpers import ROOT, require_tool

from rawprobe._plan import abi
from rawprobe._sys.bpfobject import object_bytes

STRUCTS = {
    "rp_header": abi.HEADER,
    "rp_field": abi.FIELD,
    "rp_predicate": abi.PREDICATE,
    "rp_probe": abi.PROBE,
    "rp_stats": abi.STATS,
    "rp_aggregation": abi.AGGREGATION,
    "rp_agg_key": abi.AGG_KEY,
    "rp_settings": abi.SETTINGS,
    "rp_syscall": abi.SYSCALL,
    "rp_sys_totals": abi.SYS_TOTALS,
    "rp_sys_key": abi.SYS_KEY,
    "rp_kernel_filter": abi.KERNEL_FILTER,
}


@pytest.fixture(scope="module")
def btf_types(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    bpftool = require_tool("bpftool")
    path = tmp_path_factory.mktemp("btf") / "rawprobe.bpf.o"
    path.write_bytes(object_bytes())
    dump = subprocess.run([bpftool, "-j", "btf", "dump", "file", str(path)],
                          capture_output=True, text=True, check=True).stdout
    return {t["id"]: t for t in json.loads(dump)["types"]}


def construct_offsets(layout: c.Struct) -> dict[str, tuple[int, int]]:
    offsets, position = {}, 0
    for sub in layout.subcons:
        size = sub.sizeof()
        if sub.name:
            offsets[sub.name] = (position, size)
        position += size
    return offsets


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_matches_btf(name: str, btf_types: dict[int, dict[str, Any]]) -> None:
    (btf,) = [t for t in btf_types.values() if t["kind"] == "STRUCT" and t["name"] == name]
    layout = STRUCTS[name]
    assert btf["size"] == layout.sizeof()
    ours = construct_offsets(layout)
    assert [m["name"] for m in btf["members"]] == list(ours)
    for member in btf["members"]:
        assert member["bits_offset"] == ours[member["name"]][0] * 8, member["name"]


def test_rodata_holds_only_the_settings(btf_types: dict[int, dict[str, Any]]) -> None:
    (datasec,) = [t for t in btf_types.values()
                  if t["kind"] == "DATASEC" and t["name"] == ".rodata"]
    variables = [(btf_types[v["type_id"]]["name"], v["offset"]) for v in datasec["vars"]]
    assert variables == [("rp_settings", 0)]


def test_header_constants_match(btf_types: dict[int, dict[str, Any]]) -> None:
    text = (ROOT / "clang" / "rawprobe.h").read_text()
    for macro, value in [("RP_MAX_FIELDS", abi.MAX_FIELDS), ("RP_MAX_DEREF", abi.MAX_DEREF),
                         ("RP_MAX_PREDICATES", abi.MAX_PREDICATES),
                         ("RP_MAX_STR_CONSTS", abi.MAX_STR_CONSTS),
                         ("RP_STR_CONST_LEN", abi.STR_CONST_LEN),
                         ("RP_MAX_RECORD", abi.MAX_RECORD), ("RP_MAX_NEST", abi.MAX_NEST),
                         ("RP_KEY_LEN", abi.KEY_LEN), ("RP_STACK_DEPTH", abi.STACK_DEPTH),
                         ("RP_SYS_MAX", abi.SYS_MAX), ("RP_SYS_REG_RET", abi.SYS_REG_RET),
                         ("RP_SYS_REG_DURATION", abi.SYS_REG_DURATION),
                         ("RP_SYS_REG_NR", abi.SYS_REG_NR), ("RP_ARGV_MAX", abi.ARGV_MAX),
                         ("RP_EXEC_STASH", abi.EXEC_STASH)]:
        assert f"#define {macro} {value} " in text, macro


def test_kernel_enums_and_flags_match() -> None:
    text = (ROOT / "clang" / "rawprobe.h").read_text()
    for name, value in [("RP_BASE_RECORD", abi.BaseKind.RECORD),
                        ("RP_STORE_DATA_LOC", abi.StoreKind.DATA_LOC),
                        ("RP_STORE_BUFFER", abi.StoreKind.BUFFER),
                        ("RP_STORE_STRING_ARRAY", abi.StoreKind.STRING_ARRAY)]:
        assert f"{name} = {value}," in text, name
    for name, value in [("TRACED", abi.SysFlag.TRACED), ("SUMMARY", abi.SysFlag.SUMMARY),
                        ("RECORD", abi.SysFlag.RECORD), ("NO_RETURN", abi.SysFlag.NO_RETURN),
                        ("EXEC", abi.SysFlag.EXEC), ("TALLY", abi.SysFlag.TALLY),
                        ("BY_PID", abi.SysFlag.BY_PID)]:
        shift = value.bit_length() - 1
        assert f"#define RP_SYS_{name} (1U << {shift})" in text, name
