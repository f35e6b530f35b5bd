"""Where a probe goes: target files, symbols and the file offsets the kernel wants.

The kernel plants a uprobe at an (inode, file offset) pair, so every LOCATION of a probe word ends
as a file offset. A symbol's value is a virtual address; it becomes a file offset through the
PT_LOAD segment that contains it: ``file_offset = address - p_vaddr + p_offset``.

Public entry points (the rest of rawprobe uses only these):

- :func:`find_target` turns a TARGET (path or library name) into the file to probe;
- :func:`resolve_location` turns a LOCATION into one or more :class:`Location` objects;
- :func:`list_functions` lists probe-able functions of a file.
"""

from __future__ import annotations

from ._model import Location, Symbol
from ._resolve import find_target, list_functions, resolve_location

__all__ = ["Location", "Symbol", "find_target", "list_functions", "resolve_location"]
