"""/proc/PID/maps parsing: the one reader behind -p checks, library look-up and stacks."""

from __future__ import annotations

import os

from rawprobe._host.procmaps import parse_maps, read_maps

MAPS = """\
7f0000002000-7f0000003000 r-xp 00001000 fd:01 1234                       /usr/lib/libz.so.1
00400000-00401000 r-xp 00000000 08:02 77                                 /tmp/my prog (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
"""


def test_keeps_file_mappings_sorted_with_their_identity() -> None:
    first, second = parse_maps(MAPS)
    assert (first.start, first.end, first.file_offset) == (0x400000, 0x401000, 0)
    assert (first.device, first.inode, first.path, first.deleted) == ("08:02", 77, "/tmp/my prog",
                                                                      True)
    assert (second.device, second.inode, second.path, second.deleted) == (
        "fd:01", 1234, "/usr/lib/libz.so.1", False)
    assert second.file_offset == 0x1000


def test_map_files_name_is_unpadded_hex() -> None:
    (low, high) = parse_maps(MAPS)
    assert low.map_files_name == "400000-401000"
    assert high.map_files_name == "7f0000002000-7f0000003000"


def test_reads_this_process() -> None:
    mappings = read_maps(os.getpid())
    python = os.stat(os.path.realpath("/proc/self/exe"))
    assert any(m.inode == python.st_ino for m in mappings)
    assert [m.start for m in mappings] == sorted(m.start for m in mappings)
