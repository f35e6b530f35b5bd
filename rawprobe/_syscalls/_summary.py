"""Per-system-call calls, errors and time, as ``rawprobe syscalls`` reports them (like strace -c).

    % time     seconds  usecs/call     calls    errors syscall
    ------ ----------- ----------- --------- --------- ----------------
     18.97    0.000155          19         8         2 openat
    ...
    ------ ----------- ----------- --------- --------- ----------------
    100.00    0.000817          11        71        11 total

The table is strace's: rows by time spent, most first (ties in system call number order),
microseconds per call rounded down, the errors column blank when there were none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._format import split_return

__all__ = ["SummaryRow", "SyscallSummary"]

_HEADER = "% time     seconds  usecs/call     calls    errors syscall"
_RULE = "------ ----------- ----------- --------- --------- ----------------"


@dataclass(frozen=True)
class SummaryRow:
    """One system call's totals.

    Attributes:
        syscall: Its name.
        number: Its number (orders rows that took equal time), or None.
        calls: How many calls ended.
        errors: How many of them failed.
        total_ns: Time spent in them, entry to exit.
    """

    syscall: str
    number: int | None
    calls: int
    errors: int
    total_ns: int

    @property
    def usecs_per_call(self) -> int:
        return self.total_ns // 1000 // self.calls if self.calls else 0


@dataclass
class SyscallSummary:
    """Totals accumulated from ended system calls."""

    _rows: dict[str, list[int]] = field(default_factory=dict)
    _numbers: dict[str, int | None] = field(default_factory=dict)

    def add(self, syscall: str, ret: int | None, duration_ns: int,
            number: int | None = None) -> None:
        """Count one call of ``syscall`` that returned ``ret`` (raw) after ``duration_ns``."""
        totals = self._rows.setdefault(syscall, [0, 0, 0])
        _, errnum = split_return(ret)
        totals[0] += 1
        totals[1] += errnum is not None
        totals[2] += max(duration_ns, 0)
        if number is not None or syscall not in self._numbers:
            self._numbers[syscall] = number

    def add_totals(self, syscall: str, calls: int, errors: int, total_ns: int,
                   number: int | None = None) -> None:
        """Count ``calls`` calls of ``syscall`` at once (``errors`` of them failed), as the
        kernel summed them."""
        totals = self._rows.setdefault(syscall, [0, 0, 0])
        totals[0] += calls
        totals[1] += errors
        totals[2] += max(total_ns, 0)
        if number is not None or syscall not in self._numbers:
            self._numbers[syscall] = number

    def rows(self) -> list[SummaryRow]:
        """The totals, most time first (equal times by system call number, then name)."""
        rows = [SummaryRow(name, self._numbers.get(name), calls, errors, total_ns)
                for name, (calls, errors, total_ns) in self._rows.items()]
        return sorted(rows, key=lambda row: (-(row.total_ns // 1000), row.number is None,
                                             row.number or 0, row.syscall))

    def total(self) -> SummaryRow:
        rows = self.rows()
        return SummaryRow("total", None, sum(r.calls for r in rows), sum(r.errors for r in rows),
                          sum(r.total_ns for r in rows))

    def render(self) -> str:
        """The strace -c table, lines joined with newlines (no trailing newline)."""
        total = self.total()
        total_us = total.total_ns // 1000

        def line(row: SummaryRow, percent: float) -> str:
            microseconds = row.total_ns // 1000
            seconds = f"{microseconds // 1_000_000}.{microseconds % 1_000_000:06d}"
            errors = str(row.errors) if row.errors else ""
            return (f"{percent:6.2f} {seconds:>11} {row.usecs_per_call:11d} {row.calls:9d} "
                    f"{errors:>9} {row.syscall}")

        lines = [_HEADER, _RULE]
        for row in self.rows():
            share = 100.0 * (row.total_ns // 1000) / total_us if total_us else 0.0
            lines.append(line(row, share))
        lines += [_RULE, line(total, 100.0 if total_us else 0.0)]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready totals: ``{"syscalls": [{"syscall", "calls", "errors", "total_ns"}...],
        "total": {...}}``, in the table's order."""
        def entry(row: SummaryRow) -> dict[str, Any]:
            return {"syscall": row.syscall, "calls": row.calls, "errors": row.errors,
                    "total_ns": row.total_ns}
        return {"syscalls": [entry(row) for row in self.rows()], "total": entry(self.total())}
