"""``rawprobe doctor``: what this host supports, and how to fix what it lacks."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_parsers"]


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check what this host supports for tracing, and how to fix what it lacks",
        description="Check the kernel, its configuration, the uprobe PMU, BTF, privileges, "
        "sysctls, lockdown, tracefs, libbpf and BPF features, with a verdict and a fix for "
        "each. Exits 0 when rawprobe can trace here (with either backend), 1 otherwise. Run as "
        "root for the full picture.",
    )
    parser.add_argument("--json", action="store_true",
                        help='one JSON object: {"ok": BOOL, "checks": [{name, status, detail, '
                        'fix}, ...]}')
    parser.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from rawprobe import can_trace, run_checks

    checks = run_checks()
    ok = can_trace(checks)
    if args.json:
        import json

        print(json.dumps({"ok": ok, "checks": [c.to_json() for c in checks]}))
        return 0 if ok else 1
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != "ok":
            print(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    backends = [name.removeprefix("backend-") for name in ("backend-bpf", "backend-tracefs")
                if any(c.name == name and c.status == "ok" for c in checks)]
    if ok:
        print(f"rawprobe can trace here (backends: {', '.join(backends)})", file=sys.stderr)
        return 0
    print("rawprobe cannot trace here: fix the failures above", file=sys.stderr)
    return 1
