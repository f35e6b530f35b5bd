"""``rawprobe list --usdt TARGET [GLOB]``: the USDT probes of a program or library.

Text: one line per probe site, under a header: provider, name, file offset, address, the
semaphore's address and file offset (``-`` without one), and the argument specs as the note
writes them.
JSON (``--json``): an array with one object per site, shaped like ``list --json``'s symbols
(``name``, ``file_offset``, ``address``, ``size`` 0, ``source`` ``"usdt"``, ``path``) plus
``provider``, ``semaphore_offset`` (a number, or null), ``semaphore_address`` and
``arguments`` (the spec strings). A GLOB that matches nothing is an empty listing and exit
status 1, as for ``rawprobe list``; a file without SDT notes is an error.
"""

from __future__ import annotations

import json
from typing import TextIO

from rawprobe import UsdtNotFoundError, UsdtSite, find_target, list_usdt_probes

__all__ = ["run_list_usdt", "site_object"]

_HEADER = ("PROVIDER", "NAME", "FILE_OFFSET", "ADDRESS", "SEMAPHORE_ADDRESS",
           "SEMAPHORE_FILE_OFFSET", "ARGUMENTS")


def site_object(site: UsdtSite) -> dict[str, object]:
    """A probe site as ``list --usdt --json`` writes it.

    Args:
        site: The probe site.

    Returns:
        The JSON object (a dict of JSON-ready values).
    """
    return {
        "provider": site.provider,
        "name": site.name,
        "file_offset": site.file_offset,
        "address": site.address,
        "size": 0,
        "source": "usdt",
        "semaphore_offset": site.semaphore_offset,
        "semaphore_address": site.semaphore_address,
        "arguments": list(site.argument_specs),
        "path": site.path,
    }


def run_list_usdt(
    target: str, pattern: str | None, *, pid: int | None, json_output: bool, out: TextIO
) -> int:
    """List the USDT probe sites of ``target`` on ``out``.

    Args:
        target: A path or a library name (``libstdc++``), as in a probe word.
        pattern: A glob over ``NAME``, or over ``PROVIDER:NAME`` when it holds a ``:``;
            ``None`` lists every probe.
        pid: Look ``target`` up in this process (its mappings and its root).
        json_output: Write a JSON array instead of a table.
        out: Where to write.

    Returns:
        0 when probes were listed, 1 when none matched ``pattern`` (as ``rawprobe list``).

    Raises:
        UsdtNotFoundError: The file has no SDT notes at all.
        TargetNotFoundError, NotElfError, UsdtNoteError: The target cannot be found or read.
    """
    path = find_target(target, pid)
    sites = list_usdt_probes(path)
    if pattern is not None:
        try:
            sites = list_usdt_probes(path, pattern)
        except UsdtNotFoundError as error:
            # The file has probes, just none of that name: an empty listing, as for functions.
            if json_output:
                out.write("[]\n")
            else:
                out.write(f"{error}\n")
            return 1
    if json_output:
        json.dump([site_object(site) for site in sites], out)
        out.write("\n")
        return 0
    rows = [_HEADER] + [
        (
            site.provider,
            site.name,
            f"{site.file_offset:#x}",
            f"{site.address:#x}",
            f"{site.semaphore_address:#x}" if site.semaphore_address is not None else "-",
            f"{site.semaphore_offset:#x}" if site.semaphore_offset is not None else "-",
            " ".join(site.argument_specs),
        )
        for site in sites
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADER) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        out.write(("  ".join(cells) + "  " + row[-1]).rstrip() + "\n")
    return 0
