"""Reading a rendered flame graph back, and what it should contain, computed independently.

The expectation does not share code with the renderer: it builds a tree of frame paths from
the folded stacks with plain dictionaries, where the renderer sorts stacks and sweeps them.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SVG = "{http://www.w3.org/2000/svg}"
PLOT_LEFT = 10.0
PLOT_WIDTH_MARGIN = 20.0  # 10 pixels each side


@dataclass
class Frame:
    """One drawn frame, as the SVG states it."""

    name: str
    title: str
    start: int  # data-s
    count: int  # data-n
    x: float
    y: float
    width: float
    fill: str
    label: str | None
    path: tuple[str, ...] = ()


def parse_svg(svg: str) -> ET.Element:
    """The document's root element (xml.etree refuses anything that is not well-formed XML)."""
    return ET.fromstring(svg.encode("utf-8"))


def read_frames(svg: str) -> list[Frame]:
    """Every frame of the graph, with its path (names from ``all`` down) filled in from the
    geometry: a frame's parent is the frame one row below whose sample span contains it."""
    root = parse_svg(svg)
    group = root.find(f"{SVG}g[@id='frames']")
    assert group is not None, "no <g id='frames'>"
    frames = []
    for g in group.findall(f"{SVG}g"):
        assert g.get("class") == "f"
        title = g.find(f"{SVG}title")
        rect = g.find(f"{SVG}rect")
        text = g.find(f"{SVG}text")
        assert title is not None and title.text is not None and rect is not None
        frames.append(Frame(
            name=title.text[: title.text.rindex(" (")],
            title=title.text,
            start=int(g.get("data-s", "")),
            count=int(g.get("data-n", "")),
            x=float(rect.get("x", "")),
            y=float(rect.get("y", "")),
            width=float(rect.get("width", "")),
            fill=rect.get("fill", ""),
            label=None if text is None else (text.text or ""),
        ))
    rows = sorted({frame.y for frame in frames}, reverse=True)  # the root is at the bottom
    by_row: dict[float, list[Frame]] = {y: [] for y in rows}
    for frame in frames:
        by_row[frame.y].append(frame)
    for depth, y in enumerate(rows):
        for frame in by_row[y]:
            if depth == 0:
                frame.path = (frame.name,)
                continue
            parents = [
                p for p in by_row[rows[depth - 1]]
                if p.start <= frame.start and frame.start + frame.count <= p.start + p.count
            ]
            assert len(parents) == 1, f"{frame.name}: {len(parents)} frames below contain it"
            frame.path = (*parents[0].path, frame.name)
    return frames


def script_config(svg: str) -> dict[str, object]:
    """The configuration object the embedded script starts from."""
    match = re.search(r"var cfg = (\{.*?\});", svg)
    assert match, "no configuration in the script"
    config: dict[str, object] = json.loads(match.group(1))
    return config


@dataclass
class Expected:
    """What a frame path should look like: its samples and its first sample's offset."""

    count: int
    start: int


def expected_frames(stacks: Iterable[tuple[Sequence[str], int]]) -> dict[tuple[str, ...], Expected]:
    """Every frame path (``("all", ...)``) with its inclusive count and start offset.

    Offsets follow the documented layout: within a frame, its own (self) samples come first,
    then its callees in name order, each as wide as all the samples beneath it.
    """
    inclusive: dict[tuple[str, ...], int] = {}
    self_count: dict[tuple[str, ...], int] = {}
    children: dict[tuple[str, ...], set[str]] = {}
    for stack, count in stacks:
        if count == 0:
            continue
        path: tuple[str, ...] = ("all",)
        inclusive[path] = inclusive.get(path, 0) + count
        for name in stack:
            children.setdefault(path, set()).add(name)
            path = (*path, name)
            inclusive[path] = inclusive.get(path, 0) + count
        self_count[path] = self_count.get(path, 0) + count
    result: dict[tuple[str, ...], Expected] = {}

    def place(path: tuple[str, ...], start: int) -> None:
        result[path] = Expected(inclusive[path], start)
        offset = start + self_count.get(path, 0)
        for name in sorted(children.get(path, ())):
            child = (*path, name)
            place(child, offset)
            offset += inclusive[child]

    if ("all",) in inclusive:
        place(("all",), 0)
    return result
