"""Flame graphs: folded stacks in, a self-contained interactive SVG out.

The input is the folded format that bcc's ``stackcount -f``, ``rawprobe attach --count --stack
--folded`` and Brendan Gregg's flamegraph.pl share: one ``frame1;frame2;frame3 COUNT`` line per
distinct stack, outermost frame first, the count after the last run of white space.

The picture follows flamegraph.pl's conventions, so it reads the way people expect:

- the root frame ``all`` at the bottom, each frame's callees stacked on top of it;
- a frame's width proportional to its inclusive count: stacks that share a prefix share the
  frames of that prefix; the part of a frame with no callee above it is its own (self) count;
- siblings ordered by name (code-point order), left to right. flamegraph.pl gets this order by
  sorting whole lines as text, which also splits a frame in two when a sibling's name extends
  it with a character that sorts below ``;`` (``foo`` and ``foo!``); sorting stacks as tuples of
  names gives the same order without that split;
- colors from the warm palette, chosen by a hash of the frame's name (CRC-32): the same input
  gives the same bytes, and a function has the same color in every graph;
- frames narrower than ``min_width`` pixels (0.1 by default, as flamegraph.pl) are left out:
  they cannot be seen or clicked, and a big profile would otherwise make a huge file.

The SVG carries its own script (ECMAScript, inline, no external resources). Hovering a frame
shows ``name (N samples, P%)`` (also as the frame's tooltip); clicking a frame zooms into it
(its ancestors stay, faded, at full width; "Reset Zoom", Escape or a click on ``all`` undoes
it); "Search" (or Ctrl-F or ``/``) highlights the frames whose name matches a regular expression
and shows the share of all samples under them. The view is kept in the URL
(``?zoom=DEPTH,START&search=REGEX``), so a link reopens it. Without a script (an ``<img>``
tag, an image viewer) the graph still draws, with tooltips where the viewer shows them.

What the script works on, per frame, is in the document itself: each frame is a
``<g class="f" data-s="START" data-n="COUNT">`` holding a ``<title>`` (the hover text, which
begins with the name), a ``<rect>`` and, when the name fits, a ``<text>`` label. ``START`` is
the frame's first sample in the left-to-right order of all samples and ``COUNT`` its samples, so
a frame's callees are the frames one level up whose ``[START, START + COUNT)`` lies inside its
own; the depth is read back from the rectangle's ``y``.
"""

from __future__ import annotations

import html
import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence

from .._errors import UsageError

__all__ = ["parse_folded", "render_flamegraph"]

# Geometry, in pixels. Labels use a monospace font so their width is known here: every glyph
# is 0.6 em wide in the common monospace fonts (DejaVu Sans Mono, Liberation Mono, Menlo).
SIDE_PAD = 10
TOP_PAD = 36  # the title and the buttons
BOTTOM_PAD = 28  # the details line
FRAME_HEIGHT = 16
FRAME_GAP = 1  # between a frame and its callees
FONT_SIZE = 11
CHAR_WIDTH = FONT_SIZE * 0.6
LABEL_PAD = 3  # between a rectangle's edge and its label
TEXT_DY = 11  # from a rectangle's top to its label's baseline
SEARCH_COLOR = "rgb(230,0,230)"  # outside the warm palette, so a match always stands out

# Characters XML 1.0 cannot carry even as character references; a symbol table can hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def parse_folded(text: str) -> list[tuple[tuple[str, ...], int]]:
    """Read folded stacks: ``frame1;frame2;frame3 COUNT`` per line, outermost frame first.

    Frames may contain spaces (``operator new(unsigned long)``): the count is what follows the
    last run of white space. Blank lines are skipped. Lines are returned in input order, not
    merged (:func:`render_flamegraph` merges).

    Args:
        text: The folded stacks.

    Returns:
        ``(frames, count)`` per line.

    Raises:
        UsageError: A line has no stack, or its count is not a non-negative integer; the
            message names the line.
    """
    stacks: list[tuple[tuple[str, ...], int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit() or not parts[1].isascii():
            raise UsageError(
                f"folded stacks, line {number}: expected 'frame1;frame2;... COUNT' with a "
                f"non-negative integer count, got {line[:80]!r}"
            )
        stacks.append((tuple(parts[0].split(";")), int(parts[1])))
    return stacks


def render_flamegraph(
    folded: Iterable[tuple[Sequence[str], int]],
    *,
    title: str = "Flame Graph",
    width: int = 1200,
    count_name: str = "samples",
    min_width: float = 0.1,
) -> str:
    """Draw folded stacks as an interactive SVG flame graph.

    Args:
        folded: ``(frames, count)`` pairs, outermost frame first, as :func:`parse_folded`
            returns them; the same stack may appear more than once (the counts add up). An
            empty stack counts towards ``all`` only.
        title: The heading.
        width: The image's width in pixels; frames share it less a 10-pixel margin each side.
        count_name: What a count counts, in the hover text (``samples``, ``calls``).
        min_width: Frames narrower than this, in pixels, are left out.

    Returns:
        The SVG document (UTF-8 text with an XML declaration).

    Raises:
        UsageError: A count is negative, the width leaves no room for frames, ``min_width`` is
            negative, or ``count_name`` contains ``(`` (the script finds a frame's name in
            its hover text by the last `` (``).
    """
    if width < 2 * SIDE_PAD + 100:
        raise UsageError(f"flame graph width {width} is too small: give at least 120 pixels")
    if min_width < 0:
        raise UsageError(f"flame graph minimum frame width {min_width} is negative")
    if "(" in count_name or ")" in count_name:
        raise UsageError(f"flame graph count name {count_name!r}: leave out parentheses")

    stacks: list[tuple[tuple[str, ...], int]] = []
    for frames, count in folded:
        if count < 0:
            raise UsageError(f"stack {';'.join(frames)!r} has a negative count ({count})")
        if count:
            stacks.append((tuple(frames), count))
    total = sum(count for _, count in stacks)
    if total == 0:
        return _empty_svg(title, width)

    plot_width = width - 2 * SIDE_PAD
    scale = plot_width / total
    laid_out = _layout(stacks, min_count=min_width / scale)
    max_depth = max(depth for depth, _, _, _ in laid_out)
    height = TOP_PAD + (max_depth + 1) * FRAME_HEIGHT + BOTTOM_PAD
    root_y = TOP_PAD + max_depth * FRAME_HEIGHT

    colors: dict[str, str] = {}
    parts = [_head(title, width, height)]
    append = parts.append
    append('<g id="frames">\n')
    for depth, start, count, raw_name in laid_out:
        name = _printable(raw_name)
        color = colors.get(name)
        if color is None:
            color = colors[name] = _color(name)
        # Round once and derive the label from the rounded width, as the script does.
        x = round(SIDE_PAD + start * scale, 2)
        frame_width = round(count * scale, 2)
        y = root_y - depth * FRAME_HEIGHT
        hover = html.escape(
            f"{name} ({count:,} {count_name}, {100 * count / total:.2f}%)", quote=False
        )
        append(
            f'<g class="f" data-s="{start}" data-n="{count}"><title>{hover}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{frame_width:.2f}" '
            f'height="{FRAME_HEIGHT - FRAME_GAP}" rx="2" fill="{color}"/>'
        )
        label = frame_label(name, frame_width)
        if label:
            append(
                f'<text x="{x + LABEL_PAD:.2f}" y="{y + TEXT_DY}">'
                f"{html.escape(label, quote=False)}</text>"
            )
        append("</g>\n")
    append("</g>\n")
    config = {
        "xpad": SIDE_PAD,
        "plotWidth": plot_width,
        "total": total,
        "rootY": root_y,
        "frameHeight": FRAME_HEIGHT,
        "charWidth": CHAR_WIDTH,
        "labelPad": LABEL_PAD,
        "textDy": TEXT_DY,
        "searchColor": SEARCH_COLOR,
    }
    # The configuration sits inside CDATA: keep "]]>" (and markup) out of it whatever it holds.
    config_json = (
        json.dumps(config, sort_keys=True)
        .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    append('<script type="text/ecmascript"><![CDATA[\n')
    append(_SCRIPT.replace("/*CONFIG*/null", config_json))
    append("]]></script>\n</svg>\n")
    return "".join(parts)


def frame_label(name: str, frame_width: float) -> str:
    """The label drawn in a frame: the name, cut with ``..`` to fit, or nothing.

    The embedded script computes the same after a zoom (its ``label`` function).

    Args:
        name: The frame's (printable) name.
        frame_width: The frame's width in pixels.

    Returns:
        The label; empty when not even three characters fit.
    """
    fit = math.floor((frame_width - 2 * LABEL_PAD) / CHAR_WIDTH)
    if len(name) <= fit:
        return name
    return name[: fit - 2] + ".." if fit >= 3 else ""


def _layout(
    stacks: list[tuple[tuple[str, ...], int]], min_count: float
) -> list[tuple[int, int, int, str]]:
    """Merge stacks into frames: ``(depth, start, count, name)``, ``all`` at depth 0.

    Sorting the stacks as tuples puts siblings in name order and stacks that share a prefix
    next to each other, so one pass with a stack of open frames merges them: a frame opens where
    a stack first differs from the previous one and closes where a later one stops sharing it.
    This costs a sort and a walk over the differing suffixes, far less than building a tree of
    dictionaries. Frames with fewer than ``min_count`` samples are dropped as they close.
    """
    stacks.sort(key=lambda item: item[0])
    frames: list[tuple[int, int, int, str]] = []
    open_names: list[str] = []
    open_starts: list[int] = []
    offset = 0
    for stack, count in stacks:
        common = 0
        limit = min(len(open_names), len(stack))
        while common < limit and open_names[common] == stack[common]:
            common += 1
        for index in range(len(open_names) - 1, common - 1, -1):
            start = open_starts[index]
            if offset - start >= min_count:
                frames.append((index + 1, start, offset - start, open_names[index]))
        del open_names[common:]
        del open_starts[common:]
        open_names.extend(stack[common:])
        open_starts.extend([offset] * (len(stack) - common))
        offset += count
    for index in range(len(open_names) - 1, -1, -1):
        start = open_starts[index]
        if offset - start >= min_count:
            frames.append((index + 1, start, offset - start, open_names[index]))
    frames.append((0, 0, offset, "all"))
    # Root first, then each level left to right: the order a reader of the file expects.
    frames.sort(key=lambda frame: (frame[0], frame[1]))
    return frames


def _printable(name: str) -> str:
    """``name`` with the characters XML cannot hold written as ``\\xNN``/``\\uNNNN``."""
    if _NOT_XML.search(name) is None:
        return name
    return _NOT_XML.sub(
        lambda match: (
            f"\\x{ord(match.group()):02x}" if ord(match.group()) < 0x100
            else f"\\u{ord(match.group()):04x}"
        ),
        name,
    )


def _color(name: str) -> str:
    """A warm color chosen by the name's CRC-32 (stable across runs, unlike ``hash``)."""
    digest = zlib.crc32(name.encode("utf-8", "surrogatepass"))
    red = 205 + (digest & 0xFF) * 50 // 255
    green = ((digest >> 8) & 0xFF) * 230 // 255
    blue = ((digest >> 16) & 0xFF) * 55 // 255
    return f"rgb({red},{green},{blue})"


_STYLE = """\
<style>
text { font-family: monospace; font-size: 11px; fill: rgb(0,0,0); }
#title { font-size: 17px; }
#details, #matched { font-size: 12px; }
.button { cursor: pointer; fill: rgb(26,79,160); }
.button:hover { text-decoration: underline; }
.f { cursor: pointer; }
.f:hover rect { stroke: rgb(0,0,0); stroke-width: 0.5; }
.f text { pointer-events: none; }
.parent rect, .parent text { fill-opacity: 0.5; }
</style>
"""


def _head(title: str, width: int, height: int) -> str:
    """The document up to the frames: root element, style, background, title, buttons."""
    escaped = html.escape(_printable(title), quote=False)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">\n'
        + _STYLE
        + f'<rect x="0" y="0" width="{width}" height="{height}" fill="rgb(248,248,240)"/>\n'
        f'<text id="title" x="{width / 2:.1f}" y="24" text-anchor="middle">{escaped}</text>\n'
        f'<text id="reset-zoom" class="button" x="{SIDE_PAD}" y="24" display="none">'
        "Reset Zoom</text>\n"
        f'<text id="search" class="button" x="{width - SIDE_PAD}" y="24" '
        'text-anchor="end">Search</text>\n'
        f'<text id="reset-search" class="button" x="{width - SIDE_PAD - 56}" y="24" '
        'text-anchor="end" display="none">Reset Search</text>\n'
        f'<text id="details" x="{SIDE_PAD}" y="{height - 10}"></text>\n'
        f'<text id="matched" x="{width - SIDE_PAD}" y="{height - 10}" '
        'text-anchor="end"></text>\n'
    )


def _empty_svg(title: str, width: int) -> str:
    """A valid picture that says there was nothing to draw (a run that saw no stacks)."""
    height = TOP_PAD + FRAME_HEIGHT + BOTTOM_PAD
    escaped = html.escape(_printable(title), quote=False)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">\n'
        + _STYLE
        + f'<rect x="0" y="0" width="{width}" height="{height}" fill="rgb(248,248,240)"/>\n'
        f'<text id="title" x="{width / 2:.1f}" y="24" text-anchor="middle">{escaped}</text>\n'
        f'<text id="details" x="{SIDE_PAD}" y="{TOP_PAD + 12}">No samples.</text>\n'
        "</svg>\n"
    )


# The script reads every frame from the document (nothing is duplicated into it), then serves
# hover, zoom and search. Frames are found from events by delegation on their group, so a graph
# of tens of thousands of frames does not register tens of thousands of listeners.
_SCRIPT = r"""
"use strict";
(function () {
  var cfg = /*CONFIG*/null;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var doc = document;
  var details = doc.getElementById("details");
  var matched = doc.getElementById("matched");
  var resetZoomButton = doc.getElementById("reset-zoom");
  var resetSearchButton = doc.getElementById("reset-search");
  var frames = [];
  var frameOfGroup = new WeakMap();
  var zoomed = null;
  var searching = "";

  var groups = doc.getElementById("frames").children;
  for (var i = 0; i < groups.length; i++) {
    var g = groups[i];
    var rect = g.getElementsByTagName("rect")[0];
    var title = g.getElementsByTagName("title")[0].textContent;
    var texts = g.getElementsByTagName("text");
    var frame = {
      g: g,
      rect: rect,
      text: texts.length ? texts[0] : null,
      title: title,
      // The hover text is "NAME (N samples, P%)": the name is what precedes the last " (".
      name: title.slice(0, title.lastIndexOf(" (")),
      start: Number(g.getAttribute("data-s")),
      count: Number(g.getAttribute("data-n")),
      depth: Math.round((cfg.rootY - Number(rect.getAttribute("y"))) / cfg.frameHeight),
      x: Number(rect.getAttribute("x")),
      width: Number(rect.getAttribute("width")),
      fill: rect.getAttribute("fill")
    };
    frames.push(frame);
    frameOfGroup.set(g, frame);
  }

  // Same rule as frame_label() in flamegraph.py.
  function label(name, width) {
    var fit = Math.floor((width - 2 * cfg.labelPad) / cfg.charWidth);
    if (name.length <= fit) return name;
    return fit >= 3 ? name.slice(0, fit - 2) + ".." : "";
  }

  function place(frame, x, width) {
    frame.rect.setAttribute("x", x.toFixed(2));
    frame.rect.setAttribute("width", width.toFixed(2));
    var text = label(frame.name, Number(width.toFixed(2)));
    if (text && !frame.text) {
      frame.text = doc.createElementNS(SVG_NS, "text");
      frame.text.setAttribute("y", String(Number(frame.rect.getAttribute("y")) + cfg.textDy));
      frame.g.appendChild(frame.text);
    }
    if (frame.text) {
      frame.text.setAttribute("x", (x + cfg.labelPad).toFixed(2));
      frame.text.textContent = text;
    }
    frame.g.removeAttribute("display");
  }

  function remember() {
    var params = [];
    if (zoomed) params.push("zoom=" + zoomed.depth + "," + zoomed.start);
    if (searching) params.push("search=" + encodeURIComponent(searching));
    try {
      var query = params.length ? "?" + params.join("&") : "";
      history.replaceState(null, "", location.pathname + query);
    } catch (e) {
      // Some browsers refuse to rewrite file: URLs; the view itself is unaffected.
    }
  }

  function unzoom() {
    zoomed = null;
    frames.forEach(function (frame) {
      place(frame, frame.x, frame.width);
      frame.g.classList.remove("parent");
    });
    resetZoomButton.setAttribute("display", "none");
    remember();
  }

  function zoom(target) {
    if (target.depth === 0) {
      unzoom();
      return;
    }
    var end = target.start + target.count;
    var scale = cfg.plotWidth / target.count;
    frames.forEach(function (frame) {
      var frameEnd = frame.start + frame.count;
      if (frame.depth >= target.depth && frame.start >= target.start && frameEnd <= end) {
        place(frame, cfg.xpad + (frame.start - target.start) * scale, frame.count * scale);
        frame.g.classList.remove("parent");
      } else if (frame.depth < target.depth && frame.start <= target.start && frameEnd >= end) {
        place(frame, cfg.xpad, cfg.plotWidth);
        frame.g.classList.add("parent");
      } else {
        frame.g.setAttribute("display", "none");
      }
    });
    zoomed = target;
    resetZoomButton.removeAttribute("display");
    remember();
  }

  function resetSearch() {
    searching = "";
    frames.forEach(function (frame) { frame.rect.setAttribute("fill", frame.fill); });
    matched.textContent = "";
    resetSearchButton.setAttribute("display", "none");
    remember();
  }

  function search(pattern) {
    var re;
    try {
      re = new RegExp(pattern);
    } catch (e) {
      details.textContent = "Not a regular expression: " + pattern;
      return;
    }
    var spans = [];
    frames.forEach(function (frame) {
      var hit = re.test(frame.name);
      frame.rect.setAttribute("fill", hit ? cfg.searchColor : frame.fill);
      if (hit) spans.push([frame.start, frame.start + frame.count]);
    });
    // A match inside a matching frame is already counted: add up the union of the spans.
    spans.sort(function (a, b) { return a[0] - b[0]; });
    var covered = 0;
    var reach = 0;
    spans.forEach(function (span) {
      if (span[1] <= reach) return;
      covered += span[1] - Math.max(span[0], reach);
      reach = span[1];
    });
    searching = pattern;
    matched.textContent = "Matched: " + (100 * covered / cfg.total).toFixed(2) + "%";
    resetSearchButton.removeAttribute("display");
    remember();
  }

  function askSearch() {
    var pattern = window.prompt("Search frames (regular expression):", searching);
    if (pattern === null) return;
    if (pattern) search(pattern); else resetSearch();
  }

  function frameOf(node) {
    var g = node && node.closest ? node.closest("g.f") : null;
    return g ? frameOfGroup.get(g) : undefined;
  }

  var plot = doc.getElementById("frames");
  plot.addEventListener("mouseover", function (event) {
    var frame = frameOf(event.target);
    if (frame) details.textContent = frame.title;
  });
  plot.addEventListener("mouseout", function (event) {
    if (frameOf(event.target)) details.textContent = "";
  });
  plot.addEventListener("click", function (event) {
    var frame = frameOf(event.target);
    if (frame) zoom(frame);
  });
  resetZoomButton.addEventListener("click", unzoom);
  resetSearchButton.addEventListener("click", resetSearch);
  doc.getElementById("search").addEventListener("click", askSearch);
  window.addEventListener("keydown", function (event) {
    if (((event.ctrlKey || event.metaKey) && event.key === "f") || event.key === "/") {
      event.preventDefault();
      askSearch();
    } else if (event.key === "Escape") {
      unzoom();
      resetSearch();
    }
  });

  // A link can reopen a view: ?zoom=DEPTH,START&search=REGEX (what remember() writes).
  var query = new URLSearchParams(location.search);
  var wanted = (query.get("zoom") || "").split(",");
  if (wanted.length === 2) {
    var depth = Number(wanted[0]);
    var start = Number(wanted[1]);
    for (var j = 0; j < frames.length; j++) {
      if (frames[j].depth === depth && frames[j].start === start) {
        zoom(frames[j]);
        break;
      }
    }
  }
  if (query.get("search")) search(query.get("search"));
})();
"""
