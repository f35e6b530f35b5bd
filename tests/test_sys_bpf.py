"""The bpf(2) attribute and info structs as declared through ctypes, checked against the
running kernel's own declarations (its BTF, dumped as C by bpftool): every member's offset and
size, by offsetof()."""

from __future__ import annotations

import ctypes
import subprocess

import pytest
from helpers import CompileC, require_tool

from rawprobe._sys import bpf

# (our struct, C expression of the type, C member path per our member; None: padding)
LAYOUTS = {
    "GetIdAttr": (bpf.GetIdAttr, "union bpf_attr",
                  {"start_id": "start_id", "next_id": "next_id", "open_flags": "open_flags"}),
    "InfoAttr": (bpf.InfoAttr, "union bpf_attr",
                 {"bpf_fd": "info.bpf_fd", "info_len": "info.info_len", "info": "info.info"}),
    "TaskFdQueryAttr": (bpf.TaskFdQueryAttr, "union bpf_attr", {
        "pid": "task_fd_query.pid", "fd": "task_fd_query.fd", "flags": "task_fd_query.flags",
        "buf_len": "task_fd_query.buf_len", "buf": "task_fd_query.buf",
        "prog_id": "task_fd_query.prog_id", "fd_type": "task_fd_query.fd_type",
        "probe_offset": "task_fd_query.probe_offset",
        "probe_addr": "task_fd_query.probe_addr"}),
    "MapCreateAttr": (bpf.MapCreateAttr, "union bpf_attr", {
        "map_type": "map_type", "key_size": "key_size", "value_size": "value_size",
        "max_entries": "max_entries", "map_flags": "map_flags"}),
    "ProgLoadAttr": (bpf.ProgLoadAttr, "union bpf_attr", {
        "prog_type": "prog_type", "insn_cnt": "insn_cnt", "insns": "insns",
        "license": "license", "log_level": "log_level", "log_size": "log_size",
        "log_buf": "log_buf", "kern_version": "kern_version", "prog_flags": "prog_flags",
        "prog_name": "prog_name", "prog_ifindex": "prog_ifindex",
        "expected_attach_type": "expected_attach_type"}),
    "UprobeMultiLinkAttr": (bpf.UprobeMultiLinkAttr, "union bpf_attr", {
        "prog_fd": "link_create.prog_fd", "target_fd": "link_create.target_fd",
        "attach_type": "link_create.attach_type", "flags": "link_create.flags",
        "path": "link_create.uprobe_multi.path",
        "offsets": "link_create.uprobe_multi.offsets",
        "ref_ctr_offsets": "link_create.uprobe_multi.ref_ctr_offsets",
        "cookies": "link_create.uprobe_multi.cookies",
        "cnt": "link_create.uprobe_multi.cnt", "uprobe_flags": "link_create.uprobe_multi.flags",
        "pid": "link_create.uprobe_multi.pid"}),
    "LinkInfoHead": (bpf.LinkInfoHead, "struct bpf_link_info",
                     {"type": "type", "id": "id", "prog_id": "prog_id"}),
    "PerfEventUprobeInfo": (bpf.PerfEventUprobeInfo, "struct bpf_link_info", {
        "type": "type", "id": "id", "prog_id": "prog_id",
        "perf_event_type": "perf_event.type",
        "file_name": "perf_event.uprobe.file_name", "name_len": "perf_event.uprobe.name_len",
        "offset": "perf_event.uprobe.offset", "cookie": "perf_event.uprobe.cookie",
        "ref_ctr_offset": "perf_event.uprobe.ref_ctr_offset"}),
    "UprobeMultiInfo": (bpf.UprobeMultiInfo, "struct bpf_link_info", {
        "type": "type", "id": "id", "prog_id": "prog_id", "path": "uprobe_multi.path",
        "offsets": "uprobe_multi.offsets", "ref_ctr_offsets": "uprobe_multi.ref_ctr_offsets",
        "cookies": "uprobe_multi.cookies", "path_size": "uprobe_multi.path_size",
        "count": "uprobe_multi.count", "flags": "uprobe_multi.flags",
        "pid": "uprobe_multi.pid"}),
    "ProgInfo": (bpf.ProgInfo, "struct bpf_prog_info", {
        "type": "type", "id": "id", "tag": "tag", "jited_prog_len": "jited_prog_len",
        "xlated_prog_len": "xlated_prog_len", "jited_prog_insns": "jited_prog_insns",
        "xlated_prog_insns": "xlated_prog_insns", "load_time": "load_time",
        "created_by_uid": "created_by_uid", "nr_map_ids": "nr_map_ids", "map_ids": "map_ids",
        "name": "name"}),
}


def oracle_source() -> str:
    # The distribution's <linux/bpf.h> may be older than the kernel (Debian 12's has no
    # uprobe_multi): the kernel's BTF is the header of the kernel rawprobe talks to.
    bpftool = require_tool("bpftool")
    header = subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux",
                             "format", "c"], capture_output=True, text=True, check=True).stdout
    lines = ["#define BPF_NO_PRESERVE_ACCESS_INDEX", header,
             "int printf(const char *, ...);",
             "#define offsetof(type, member) __builtin_offsetof(type, member)",
             "int main(void) {"]
    for name, (_cls, c_type, members) in LAYOUTS.items():
        for ours, theirs in members.items():
            lines.append(f'    printf("{name}.{ours} %lu %lu\\n", offsetof({c_type}, {theirs}),'
                         f" sizeof((({c_type} *)0)->{theirs}));")
    lines += ['    printf("attr %lu\\n", sizeof(union bpf_attr));',
              '    printf("link_info %lu\\n", sizeof(struct bpf_link_info));',
              '    printf("prog_info %lu\\n", sizeof(struct bpf_prog_info));',
              "    return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def facts(compile_c: CompileC) -> dict[str, list[int]]:
    oracle = compile_c(oracle_source(), name="bpf_attr_oracle", flags=("-w",))
    output = subprocess.run([str(oracle)], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: [int(x) for x in line.split()[1:]] for line in output.splitlines()}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_members_sit_where_linux_bpf_h_puts_them(name: str, facts: dict[str, list[int]]) -> None:
    cls, _c_type, members = LAYOUTS[name]
    for ours in members:
        offset, size = facts[f"{name}.{ours}"]
        field = getattr(cls, ours)
        assert (field.offset, field.size) == (offset, size), f"{name}.{ours}"


def test_buffers_are_at_least_the_header_sizes(facts: dict[str, list[int]]) -> None:
    # The header of the build machine may be older than the kernel: what rawprobe zeroes must
    # cover at least what this header declares.
    assert facts["attr"][0] <= bpf._ATTR_SIZE
    assert facts["link_info"][0] <= bpf._LINK_INFO_SIZE
    assert facts["prog_info"][0] <= bpf._PROG_INFO_SIZE
    for cls, c_type, _members in LAYOUTS.values():
        limit = {"union bpf_attr": bpf._ATTR_SIZE, "struct bpf_link_info": bpf._LINK_INFO_SIZE,
                 "struct bpf_prog_info": bpf._PROG_INFO_SIZE}[c_type]
        assert ctypes.sizeof(cls) <= limit, cls.__name__
