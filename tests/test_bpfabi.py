"""The structs shared with the BPF programs agree with the BTF of the built object."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path
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
    "rp_agg_value": abi.AGG_VALUE,
    "rp_key_part": abi.KEY_PART,
    "rp_span_key": abi.SPAN_KEY,
    "rp_span_start": abi.SPAN_START,
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
                         ("RP_KEY_LEN", abi.KEY_LEN), ("RP_MAX_KEYS", abi.MAX_KEYS),
                         ("RP_STACK_DEPTH", abi.STACK_DEPTH),
                         ("RP_FUNC_IP_WORD", abi.FUNC_IP_WORD),
                         ("RP_SYS_MAX", abi.SYS_MAX), ("RP_SYS_REG_RET", abi.SYS_REG_RET),
                         ("RP_SYS_REG_DURATION", abi.SYS_REG_DURATION),
                         ("RP_SYS_REG_NR", abi.SYS_REG_NR), ("RP_ARGV_MAX", abi.ARGV_MAX),
                         ("RP_EXEC_STASH", abi.EXEC_STASH)]:
        assert f"#define {macro} {value} " in text, macro


def test_start_up_formats_match_the_declarations() -> None:
    # The start-up path packs the settings and unpacks headers without construct.
    assert abi.compile_struct(abi.HEADER).format == abi.HEADER_FORMAT
    assert abi.compile_struct(abi.SETTINGS).format == abi.SETTINGS_FORMAT
    assert abi.HEADER.sizeof() == abi.HEADER_SIZE
    values = {"follow": 1, "self_tgid": 4242, "filters": 0, "aggregates": 1}
    assert struct.pack(abi.SETTINGS_FORMAT, *values.values()) == abi.SETTINGS.build(values)
# enum name in clang/rawprobe.h -> (the IntEnum mirroring it, the prefix of its constants)
ENUMS = {
    "rp_action": (abi.Action, "RP_ACTION_"),
    "rp_key": (abi.KeyKind, "RP_KEY_"),
    "rp_hist": (abi.HistKind, "RP_HIST_"),
    "rp_base": (abi.BaseKind, "RP_BASE_"),
    "rp_store": (abi.StoreKind, "RP_STORE_"),
    "rp_pred_op": (abi.PredOp, "RP_PRED_"),
    "rp_cmp": (abi.Cmp, "RP_CMP_"),
}


def test_enums_and_constants_are_the_headers(tmp_path: Path) -> None:
    """Every enum and limit rawprobe mirrors, as the C compiler reads clang/rawprobe.h (the
    enums' types are not in the object's BTF: no struct member is declared with them)."""
    require_tool("gcc")
    header = (ROOT / "clang" / "rawprobe.h").read_text()
    names = re.findall(r"^\s*(RP_[A-Z0-9_]+)\s*=", header, re.M)
    defines = [name for name in re.findall(r"^#define (RP_[A-Z0-9_]+) ", header, re.M)
               if name != "RP_COOKIE_TALLY"]
    source = tmp_path / "enums.c"
    source.write_text(
        "typedef unsigned char __u8; typedef unsigned short __u16; typedef unsigned int __u32;\n"
        "typedef int __s32; typedef unsigned long long __u64; typedef long long __s64;\n"
        '#include <stdio.h>\n#include "rawprobe.h"\nint main(void) {\n'
        + "".join(f'    printf("{n} %lld\\n", (long long)({n}));\n' for n in names + defines)
        + "    return 0;\n}\n")
    binary = tmp_path / "enums"
    subprocess.run(["gcc", "-I", str(ROOT / "clang"), "-o", str(binary), str(source)],
                   check=True)
    values = dict(line.split() for line in subprocess.run(
        [str(binary)], capture_output=True, text=True, check=True).stdout.splitlines())
    for enum_name, (enum, prefix) in ENUMS.items():
        assert f"enum {enum_name} " in header, enum_name
        theirs = {name[len(prefix):]: int(value) for name, value in values.items()
                  if name.startswith(prefix) and name in names}
        assert theirs == {member.name: int(member) for member in enum}, enum_name
    for macro, value in [("RP_MAX_FIELDS", abi.MAX_FIELDS), ("RP_MAX_DEREF", abi.MAX_DEREF),
                         ("RP_MAX_PREDICATES", abi.MAX_PREDICATES),
                         ("RP_MAX_STR_CONSTS", abi.MAX_STR_CONSTS),
                         ("RP_STR_CONST_LEN", abi.STR_CONST_LEN),
                         ("RP_MAX_RECORD", abi.MAX_RECORD), ("RP_MAX_NEST", abi.MAX_NEST),
                         ("RP_KEY_LEN", abi.KEY_LEN), ("RP_STACK_DEPTH", abi.STACK_DEPTH),
                         ("RP_COMM_LEN", abi.COMM_LEN)]:
        assert int(values[macro]) == value, macro
    assert int(values["RP_PROBE_RETURN"]) == abi.PROBE_RETURN
    assert int(values["RP_PROBE_STACK"]) == abi.PROBE_STACK
    assert int(values["RP_PROBE_AT_ENTRY"]) == abi.PROBE_AT_ENTRY
    for name in ("TRACED", "SUMMARY", "RECORD", "NO_RETURN", "EXEC", "TALLY", "BY_PID"):
        assert int(values[f"RP_SYS_{name}"]) == getattr(abi.SysFlag, name), name
