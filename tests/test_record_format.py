"""The recording file format on plain bytes: a recording written from records and layouts is
decoded by the report into the same events, with the recording's clock and addresses, and a
recording cut short is read up to its last whole record."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from rawprobe._errors import UsageError
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._plan.events import RecordLayout
from rawprobe._probe.aggregations import HistSpec
from rawprobe._probe.words import parse_probe
from rawprobe._record import Header, Recording, Trailer
from rawprobe._record.fileformat import write_header, write_trailer

LAYOUTS = [
    RecordLayout("add", compile_fetchargs(parse_probe("p:./x:add a=%di:s32 b=%si:u64")
                                          .fetchargs)),
    RecordLayout("where", compile_fetchargs(parse_probe("p:./x:f at=%di:symbol").fetchargs)),
]


def framed(event_id: int, tag: int, values: bytes, pid: int = 10) -> bytes:
    layout = LAYOUTS[event_id]
    payload = bytearray(layout.fixed_size)
    struct.pack_into("<QIIIIII16s", payload, 0, tag, pid, pid, event_id, 0, 0, 0, b"prog")
    payload[48:48 + len(values)] = values
    header = struct.pack("<II", len(payload), 0)
    return header + bytes(payload) + b"\0" * (-(len(payload) + 8) % 8)


def write(path: Path, records: bytes, trailer: bool = True) -> None:
    header = Header([layout.state() for layout in LAYOUTS],
                    [{"name": layout.event} for layout in LAYOUTS], 1_000_000_000_000,
                    "x86_64", "host", "6.18", "0", 0, {"probes": []})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        offset = write_header(fd, header)
        os.write(fd, records)
        if trailer:
            write_trailer(fd, offset + len(records), Trailer(
                {"hits": 5, "lost": 1, "filtered": 0}, {"10": {str(0x401000): "main+0x10"}}, 0))
    finally:
        os.close(fd)


def records() -> bytes:
    adds = [framed(0, 100 + i, struct.pack("<iIQ", -i, 0, i * 3)) for i in range(6)]
    return b"".join(adds) + framed(1, 200, struct.pack("<Q", 0x401000))


def test_a_recording_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "r.rprec"
    write(path, records())
    with Recording(str(path)) as recording:
        events = list(recording.events())
        assert [(e.event, e.ts_ns, e.values) for e in events] == [
            *[("add", 100 + i, (-i, i * 3)) for i in range(6)], ("where", 200, (0x401000,))]
        assert recording.trailer is not None and recording.trailer.stats["lost"] == 1
        lines = "".join(recording.formatter().batch_lines(batch, True)
                        for batch in recording.batches()).splitlines()
        first = json.loads(lines[0])
        assert first["ts_ns"] == 100 + 1_000_000_000_000  # the recording's clock offset
        assert json.loads(lines[-1])["args"] == {"at": "main+0x10"}  # described when recorded
        assert recording.counts().as_dict() == {("add", None): 6, ("where", None): 1}
        (histogram,) = recording.histograms(HistSpec("b")).histograms
        assert histogram.total == 6


def test_a_recording_cut_short_reads_to_its_last_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "r.rprec"
    data = records()
    write(path, data[:-5], trailer=False)
    with Recording(str(path)) as recording:
        assert recording.trailer is None
        assert [e.event for e in recording.events()] == ["add"] * 6


def test_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"hello, world, not a recording at all")
    with pytest.raises(UsageError, match="not a rawprobe recording"):
        Recording(str(path))
