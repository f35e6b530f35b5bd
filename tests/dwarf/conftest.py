"""Tests of the DWARF reader (rawprobe._dwarf); ``dwarf_programs`` holds their C programs."""

from __future__ import annotations

import sys
from pathlib import Path

# kernel/ imports dwarf_programs too, also when it is collected on its own.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
