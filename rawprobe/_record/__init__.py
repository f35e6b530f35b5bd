"""``rawprobe record`` and ``rawprobe report``: the BPF ring buffer's records kept in a file at
the rate the kernel produces them (:mod:`.recorder`), decoded later on any host
(:mod:`.report`); the file format is :mod:`.fileformat` (docs/record-format.md)."""

from __future__ import annotations

from .fileformat import FORMAT_VERSION, Header, Trailer
from .recorder import Recorder
from .report import Recording

__all__ = ["FORMAT_VERSION", "Header", "Recorder", "Recording", "Trailer"]
