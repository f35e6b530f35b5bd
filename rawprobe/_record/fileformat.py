"""The file ``rawprobe record`` writes and ``rawprobe report`` reads (docs/record-format.md).

::

    magic     16 bytes  b"RAWPROBE-RECORD\\0"
    header    u32 format version, u32 length N, then N bytes of JSON (see :class:`Header`)
    records   the BPF ring buffer's records exactly as the kernel wrote them, in the ring's
              order: each an 8-byte framing word pair (u32 length with the BUSY and DISCARD
              bits, u32 page offset), the record (struct rp_header and the fields), padding
              to 8 bytes
    trailer   JSON (see :class:`Trailer`), then 24 bytes: u64 offset of the trailer JSON from
              the start of the file, u32 its length, 4 zero bytes, b"RPEND\\0\\0\\0"

Everything is little-endian (x86-64, arm64: the architectures the BPF objects are built for);
the header names the machine. The records need no rawprobe of the same version to be read,
only this format: the layouts are in the header.
"""

from __future__ import annotations

import json
import os
import struct

from .._errors import UsageError
from .._values import Record

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "Trailer", "read_file", "write_header",
           "write_trailer"]

MAGIC = b"RAWPROBE-RECORD\0"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<II")
_FOOTER = struct.Struct("<QI4x8s")  # 24 bytes: offset, length, padding, end magic
_END = b"RPEND\0\0\0"


class Header(Record):
    """What a recording needs to be decoded, written before the records.

    Attributes:
        layouts: Each event id's record layout (``RecordLayout.state()``).
        events: Each event id's ``{"name", "path", "file_offset", "retprobe", "role"}``.
        clock_offset_ns: Wall-clock time minus CLOCK_MONOTONIC when the recording began
            (records are timed with the monotonic clock).
        machine: ``uname -m`` of the recording host.
        host: Its name; ``kernel``: its release; ``rawprobe``: the version that recorded.
        started_ns: When the recording began (wall clock, ns since the epoch).
        target: What was traced: ``{"pids": [...]}``, ``{"command": [...]}`` or ``{}``.
    """

    __slots__ = ("clock_offset_ns", "events", "host", "kernel", "layouts", "machine",
                 "rawprobe", "started_ns", "target")

    layouts: list[Any]
    events: list[dict[str, Any]]
    clock_offset_ns: int
    machine: str
    host: str
    kernel: str
    rawprobe: str
    started_ns: int
    target: dict[str, Any]

    def __init__(self, layouts: list[Any], events: list[dict[str, Any]], clock_offset_ns: int,
                 machine: str, host: str, kernel: str, rawprobe: str, started_ns: int,
                 target: dict[str, Any]) -> None:
        for name, value in (("layouts", layouts), ("events", events),
                            ("clock_offset_ns", clock_offset_ns), ("machine", machine),
                            ("host", host), ("kernel", kernel), ("rawprobe", rawprobe),
                            ("started_ns", started_ns), ("target", target)):
            object.__setattr__(self, name, value)


class Trailer(Record):
    """What is known only once the recording ends, written after the records.

    Attributes:
        stats: ``{"hits", "lost", "filtered", "records", "bytes", "probes": {name: {...}}}``.
        symbols: For events that carry addresses (``symbol`` fields, stacks): ``{pid:
            {address: "function+0xoffset"}}``, resolved on the recording host while the
            processes' mappings were known, so the report needs neither the processes nor
            their files.
        ended_ns: When the recording ended (wall clock).
    """

    __slots__ = ("ended_ns", "stats", "symbols")

    stats: dict[str, Any]
    symbols: dict[str, dict[str, str]]
    ended_ns: int

    def __init__(self, stats: dict[str, Any], symbols: dict[str, dict[str, str]],
                 ended_ns: int) -> None:
        object.__setattr__(self, "stats", stats)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "ended_ns", ended_ns)


def write_header(fd: int, header: Header) -> int:
    """Write the magic and the header at the start of ``fd``; return the records' offset."""
    body = json.dumps(header.as_dict(), separators=(",", ":")).encode()
    data = MAGIC + _HEAD.pack(FORMAT_VERSION, len(body)) + body
    _write_all(fd, data)
    return len(data)


def write_trailer(fd: int, offset: int, trailer: Trailer) -> None:
    """Append the trailer at ``offset`` (the end of the records)."""
    body = json.dumps(trailer.as_dict(), separators=(",", ":")).encode()
    _write_all(fd, body + _FOOTER.pack(offset, len(body), _END))


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_file(data: bytes | memoryview, path: str) -> tuple[Header, memoryview, Trailer | None]:
    """Split a recording into its header, its records and its trailer (None when the
    recording did not end cleanly: the records are read up to the last whole one).

    Raises:
        UsageError: Not a recording, or one of a format this rawprobe does not read.
    """
    view = memoryview(data)
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise UsageError(f"{path}: not a rawprobe recording (made by 'rawprobe record')")
    version, length = _HEAD.unpack_from(view, len(MAGIC))
    if version != FORMAT_VERSION:
        raise UsageError(f"{path}: a recording in format {version}; this rawprobe reads "
                         f"format {FORMAT_VERSION}")
    start = len(MAGIC) + _HEAD.size
    try:
        header = Header(**json.loads(bytes(view[start:start + length])))
    except (ValueError, TypeError) as error:
        raise UsageError(f"{path}: its header is damaged ({error})") from None
    records_start = start + length
    trailer = None
    end = len(view)
    if end - records_start >= _FOOTER.size:
        offset, size, magic = _FOOTER.unpack_from(view, end - _FOOTER.size)
        if magic == _END and records_start <= offset and offset + size + _FOOTER.size == end:
            try:
                trailer = Trailer(**json.loads(bytes(view[offset:offset + size])))
                end = offset
            except (ValueError, TypeError):
                trailer = None
    return header, view[records_start:end], trailer
