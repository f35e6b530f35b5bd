"""The CPUs of this host."""

from __future__ import annotations

import os

__all__ = ["online_cpus", "parse_cpu_list"]


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list (``0-3,5,7-8``), as in ``/sys/devices/system/cpu/online``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def online_cpus() -> list[int]:
    """The CPUs online now."""
    try:
        with open("/sys/devices/system/cpu/online") as file:
            return parse_cpu_list(file.read())
    except OSError:
        return list(range(os.cpu_count() or 1))
