"""``rawprobe probes``: every uprobe active on this host, and ``--clean`` for leftovers."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rawprobe import ActiveProbe

__all__ = ["add_parsers", "format_table"]


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "probes",
        help="list every uprobe active on this host, whoever planted it",
        description="List the uprobes active on this host: tracefs uprobe_events definitions "
        "(perf probe, rawprobe --backend tracefs), BPF links (rawprobe, libbpf tools, "
        "bpftrace), and perf events with a BPF program attached (bcc, older bpftrace), with "
        "their owners where the kernel shows them. Run as root to see everything.",
    )
    parser.add_argument("--json", action="store_true",
                        help="one JSON array of objects (kind, path, file_offset, symbol, ...)")
    parser.add_argument("--clean", action="store_true",
                        help="remove uprobe_events definitions left by rawprobe runs that were "
                        "killed (only those whose process is gone)")
    parser.set_defaults(run=run_probes)


def _place(probe: ActiveProbe) -> str:
    place = f"{probe.path}:{probe.file_offset:#x}"
    return place + (f"({probe.ref_ctr_offset:#x})" if probe.ref_ctr_offset else "")


def _detail(probe: ActiveProbe) -> str:
    if probe.kind == "tracefs":
        text = f"{probe.group}/{probe.event}"
        return text + (" (left by a killed rawprobe: probes --clean)" if probe.stale else "")
    parts = []
    if probe.link_id is not None:
        parts.append(f"link {probe.link_id}")
    if probe.prog_id is not None:
        parts.append(f"prog {probe.prog_id}" + (f" ({probe.prog_name})" if probe.prog_name
                                                else ""))
    if probe.cookie:
        parts.append(f"cookie {probe.cookie:#x}")
    return " ".join(parts)


def format_table(probes: list[ActiveProbe]) -> list[str]:
    """The human table: one line per probe, columns aligned."""
    header = ("KIND", "PID", "COMM", "TYPE", "SYMBOL", "PLACE", "DETAIL")
    rows = [
        (
            p.kind,
            "-" if p.pid is None else str(p.pid),
            p.comm or "-",
            "return" if p.retprobe else "entry",
            p.symbol or "?",
            _place(p),
            _detail(p),
        )
        for p in probes
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  " + row[-1]
        for row in [header, *rows]
    ]


def run_probes(args: argparse.Namespace) -> int:
    if args.clean:
        return _run_clean(args)
    from rawprobe import list_probes

    inventory = list_probes()
    for warning in inventory.warnings:
        print(f"rawprobe: warning: {warning}", file=sys.stderr)
    probes = sorted(inventory.probes, key=lambda p: (p.kind, p.path, p.file_offset, p.retprobe,
                                                     p.pid or 0))
    # Where something could not be looked at, the list is not all there is: exit 2 (missing
    # privileges), and never claim that none are active.
    status = 2 if inventory.unread else 0
    if args.json:
        import json

        print(json.dumps([p.to_json() for p in probes]))
    elif probes:
        print("\n".join(line.rstrip() for line in format_table(probes)))
    if inventory.unread:
        print(f"rawprobe: error: {'no uprobes found' if not probes else 'these are not all'}"
              " in what this user may read (see the warnings): run rawprobe as root to see "
              "every uprobe on this host", file=sys.stderr)
    elif not probes and not args.json:
        print("rawprobe: no uprobes are active on this host", file=sys.stderr)
    return status


def _run_clean(args: argparse.Namespace) -> int:
    from rawprobe import clean_stale_probes

    report = clean_stale_probes()
    if args.json:
        import json

        print(json.dumps({
            "removed": [{"group": g, "event": e} for g, e in report.removed],
            "kept": [{"group": g, "event": e, "pid": pid} for g, e, pid in report.kept],
            "failed": [{"group": g, "event": e, "error": why} for g, e, why in report.failed],
        }))
    else:
        for group, event in report.removed:
            print(f"removed {group}/{event}")
        for group, event, why in report.failed:
            print(f"rawprobe: could not remove {group}/{event}: {why}", file=sys.stderr)
        kept = {(g, pid) for g, _e, pid in report.kept}
        print(f"rawprobe: removed {len(report.removed)} leftover uprobe event"
              f"{'s' * (len(report.removed) != 1)}"
              + (f"; left {len(report.kept)} of {len(kept)} running rawprobe"
                 f"{'s' * (len(kept) != 1)} alone" if kept else ""), file=sys.stderr)
    return 1 if report.failed else 0
