"""The canonical frame address (CFA) at an address, from call frame information.

Compilers describe stack variables relative to the function's frame base, and since DWARF 4
gcc and clang make that ``DW_OP_call_frame_cfa``: the value of the stack pointer in the caller,
just before the call (DWARF 5, section 6.4 "Call Frame Information"). Where the CFA is at a
given instruction the CFI table says, as "register + offset" (``%sp + 8`` on entry, ``%bp + 16``
once a frame pointer is set up). perf probe does the same with libdw's
``dwarf_cfi_addrframe`` and ``dwarf_frame_cfa`` (tools/perf/util/probe-finder.c,
``call_probe_finder``).

The table comes from ``.eh_frame`` of the probed file (present in stripped files too; its copy in
a separate debug file is ``SHT_NOBITS``), else from ``.debug_frame``.
"""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["FrameTable"]


class FrameTable:
    """CFA rules of one file's functions, decoded on demand.

    Args:
        dwarf_infos: pyelftools ``DWARFInfo`` objects to take the table from, in order of
            preference; the first with ``.eh_frame`` (else ``.debug_frame``) wins.
    """

    def __init__(self, dwarf_infos: list[Any]) -> None:
        self._sources = dwarf_infos
        self._starts: list[int] | None = None
        self._entries: list[tuple[int, int, Any]] = []
        self._decoded: dict[int, list[tuple[int, Any]]] = {}

    def _load(self) -> None:
        from elftools.dwarf.callframe import FDE

        entries: list[Any] = []
        for info in self._sources:
            try:
                if info.has_EH_CFI():
                    entries = info.EH_CFI_entries()
                elif info.has_CFI():
                    entries = info.CFI_entries()
            except Exception:  # a damaged table leaves the CFA unknown
                entries = []
            if entries:
                break
        table = []
        for entry in entries:
            if isinstance(entry, FDE):
                start = entry.header["initial_location"]
                table.append((start, start + entry.header["address_range"], entry))
        table.sort(key=lambda item: item[0])
        self._entries = table
        self._starts = [start for start, _, _ in table]

    def cfa_rule(self, address: int) -> tuple[int, int] | None:
        """The CFA at ``address`` as (DWARF register number, offset).

        Args:
            address: An instruction's ELF virtual address.

        Returns:
            (register, offset) meaning CFA = register + offset; None when no FDE covers the
            address or the rule is a DWARF expression (``DW_CFA_def_cfa_expression``).
        """
        if self._starts is None:
            self._load()
        assert self._starts is not None
        index = bisect.bisect_right(self._starts, address) - 1
        if index < 0:
            return None
        start, end, entry = self._entries[index]
        if not start <= address < end:
            return None
        rows = self._decoded.get(start)
        if rows is None:
            try:
                table = entry.get_decoded().table
            except Exception:  # an undecodable FDE leaves the CFA unknown
                table = []
            rows = [(row["pc"], row["cfa"]) for row in table]
            self._decoded[start] = rows
        rule = None
        for pc, cfa in rows:
            if pc > address:
                break
            rule = cfa
        if rule is None or rule.expr is not None or rule.reg is None:
            return None
        return int(rule.reg), int(rule.offset)
