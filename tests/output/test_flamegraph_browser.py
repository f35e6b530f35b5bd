"""The flame graph in a real browser: it draws, and hover, click-to-zoom and search work.

A headless Chromium opens the SVG file; the mouse events go through the browser's input path.
Without Chromium these tests skip (or fail, under RAWPROBE_REQUIRE_BPF=1, like other tests
that need something of the host).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from flamegraph_svg import Frame, read_frames
from headless_chromium import Browser, Page, chromium, decode_png

from rawprobe._output.flamegraph import FRAME_HEIGHT, SEARCH_COLOR, parse_folded, render_flamegraph

PROFILE = """\
main;run;parse_args 10
main;run;work;compute 50
main;run;work;io_wait 25
main;run;work;compute;std::vector<int>::at 8
main;init 7
main;run;work 5
main;run;work;compute;a<b>&"c'd 4
"""
WIDTH = 1200
TOTAL = 109  # samples in PROFILE


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def graph(tmp_path: Path) -> tuple[Path, list[Frame], int]:
    svg = render_flamegraph(parse_folded(PROFILE), title="rawprobe <test> & \"co\"")
    path = tmp_path / "graph.svg"
    path.write_text(svg, encoding="utf-8")
    height = int(svg.split('height="', 1)[1].split('"', 1)[0])
    return path, read_frames(svg), height


def open_graph(browser: Browser, path: Path, height: int, query: str = "") -> Page:
    page = browser.new_page()
    page.goto(path.as_uri() + query, WIDTH, height)
    assert page.exceptions() == []
    return page


def centre(frame: Frame) -> tuple[float, float]:
    return frame.x + frame.width / 2, frame.y + (FRAME_HEIGHT - 1) / 2


def frame_named(frames: list[Frame], name: str) -> Frame:
    (frame,) = [f for f in frames if f.name == name]
    return frame


def rect_state(page: Page, frame: Frame) -> dict[str, str | None]:
    """The live attributes of a frame's group and rectangle, found by its sample span."""
    state: dict[str, str | None] = page.evaluate(f"""(() => {{
        const g = [...document.querySelectorAll("g.f")].find(
            (g) => g.getAttribute("data-s") === "{frame.start}"
                && g.getAttribute("data-n") === "{frame.count}"
                && g.querySelector("rect").getAttribute("y") === "{frame.y:g}");
        const rect = g.querySelector("rect");
        return {{x: rect.getAttribute("x"), width: rect.getAttribute("width"),
                 fill: rect.getAttribute("fill"), display: g.getAttribute("display"),
                 classes: g.getAttribute("class")}};
    }})()""")
    return state


def warm(pixel: tuple[int, int, int]) -> bool:
    red, green, blue = pixel
    return red >= 200 and green <= 235 and blue <= 60


def pixels(row: bytes) -> list[tuple[int, int, int]]:
    return [(row[i], row[i + 1], row[i + 2]) for i in range(0, len(row), 3)]


def test_renders_frames_and_text(browser: Browser, graph: tuple[Path, list[Frame], int],
                                 tmp_path: Path) -> None:
    path, frames, height = graph
    page = open_graph(browser, path, height)
    png = page.screenshot()
    (tmp_path / "graph.png").write_bytes(png)
    width, png_height, rows = decode_png(png)
    assert (width, png_height) == (WIDTH, height)

    # The root frame is painted across the whole plot, in the warm palette.
    root = frame_named(frames, "all")
    row = pixels(rows[int(centre(root)[1])])
    painted = sum(warm(pixel) for pixel in row[15:WIDTH - 15])
    assert painted >= 0.95 * (WIDTH - 30)
    # Every frame wider than a few pixels is painted in its own color (its label aside).
    for frame in frames:
        if frame.width < 4:
            continue
        inside = Counter(
            pixel
            for row in rows[int(frame.y) + 2:int(frame.y) + FRAME_HEIGHT - 2]
            for pixel in pixels(row)[int(frame.x) + 2:int(frame.x + frame.width) - 1]
        )
        fill = tuple(int(part) for part in frame.fill[4:-1].split(","))
        assert inside.most_common(1)[0][0] == fill, frame.name
    # Dark pixels in the title band: the title text was drawn.
    title_band = [pixel for row in rows[8:30] for pixel in pixels(row)]
    assert sum(max(pixel) < 80 for pixel in title_band) > 100


def test_hover_shows_name_count_and_share(browser: Browser,
                                          graph: tuple[Path, list[Frame], int]) -> None:
    path, frames, height = graph
    page = open_graph(browser, path, height)
    compute = frame_named(frames, "compute")
    page.browser.result(page.mouse("mouseMoved", *centre(compute)))
    assert compute.count == 62
    assert page.evaluate('document.getElementById("details").textContent') == \
        f"compute (62 samples, {100 * 62 / TOTAL:.2f}%)"
    page.browser.result(page.mouse("mouseMoved", 600, 5))  # off every frame
    assert page.evaluate('document.getElementById("details").textContent') == ""


def test_click_zooms_and_reset_restores(browser: Browser, graph: tuple[Path, list[Frame], int],
                                        tmp_path: Path) -> None:
    path, frames, height = graph
    page = open_graph(browser, path, height)
    work, compute = frame_named(frames, "work"), frame_named(frames, "compute")
    init, run = frame_named(frames, "init"), frame_named(frames, "run")

    page.click(*centre(work))
    assert rect_state(page, work)["width"] == "1180.00"
    assert rect_state(page, work)["x"] == "10.00"
    zoomed = rect_state(page, compute)
    assert float(zoomed["width"] or 0) == pytest.approx(compute.count / work.count * 1180, abs=0.01)
    assert float(zoomed["x"] or 0) == pytest.approx(
        10 + (compute.start - work.start) / work.count * 1180, abs=0.01)
    assert rect_state(page, init)["display"] == "none"  # not on the path to work
    assert "parent" in (rect_state(page, run)["classes"] or "")  # an ancestor, faded
    assert rect_state(page, run)["width"] == "1180.00"
    assert page.evaluate('document.getElementById("reset-zoom").getAttribute("display")') is None
    assert page.evaluate("location.search") == f"?zoom=3,{work.start}"
    # The zoomed frame is painted across the plot.
    (tmp_path / "zoomed.png").write_bytes(png := page.screenshot())
    _, _, rows = decode_png(png)
    row = pixels(rows[int(centre(work)[1])])
    assert sum(warm(pixel) for pixel in row[15:WIDTH - 15]) >= 0.95 * (WIDTH - 30)

    box = page.evaluate('(() => { const b = document.getElementById("reset-zoom").getBBox();'
                        ' return [b.x + b.width / 2, b.y + b.height / 2]; })()')
    page.click(*box)
    for frame in (work, compute, init, run):
        state = rect_state(page, frame)
        assert (state["x"], state["width"], state["display"]) == (
            f"{frame.x:.2f}", f"{frame.width:.2f}", None)
    assert page.evaluate("location.search") == ""
    assert page.exceptions() == []


def test_search_highlights_and_reports_share(browser: Browser,
                                             graph: tuple[Path, list[Frame], int]) -> None:
    path, frames, height = graph
    page = open_graph(browser, path, height)
    box = page.evaluate('(() => { const b = document.getElementById("search").getBBox();'
                        ' return [b.x + b.width / 2, b.y + b.height / 2]; })()')
    page.browser.result(page.mouse("mouseMoved", *box))
    page.browser.result(page.mouse("mousePressed", *box))
    released = page.mouse("mouseReleased", *box)  # answered once the prompt is dismissed
    page.browser.wait_event("Page.javascriptDialogOpening", page.session)
    page.call("Page.handleJavaScriptDialog", accept=True, promptText="^(compute|a<b|io_)")
    page.browser.result(released)

    # a<b>&"c'd (4) lies inside compute (62), counted once; io_wait (25) is apart.
    assert page.evaluate('document.getElementById("matched").textContent') == \
        f"Matched: {100 * (62 + 25) / TOTAL:.2f}%"
    for frame in frames:
        hit = frame.name.startswith(("compute", "a<b", "io_"))
        assert (rect_state(page, frame)["fill"] == SEARCH_COLOR) == hit, frame.name
    assert page.evaluate("decodeURIComponent(location.search)") == "?search=^(compute|a<b|io_)"
    assert page.exceptions() == []


def test_link_reopens_a_zoomed_and_searched_view(browser: Browser,
                                                 graph: tuple[Path, list[Frame], int]) -> None:
    path, frames, height = graph
    io_wait = frame_named(frames, "io_wait")
    page = open_graph(browser, path, height, f"?zoom=4,{io_wait.start}&search=wait")
    assert rect_state(page, io_wait)["width"] == "1180.00"
    assert rect_state(page, io_wait)["fill"] == SEARCH_COLOR
    assert page.evaluate('document.getElementById("matched").textContent') == \
        f"Matched: {100 * 25 / TOTAL:.2f}%"


def test_hostile_names_render_as_text(browser: Browser,
                                      graph: tuple[Path, list[Frame], int]) -> None:
    path, _frames, height = graph
    page = open_graph(browser, path, height)
    assert page.evaluate('document.getElementById("title").textContent') == \
        'rawprobe <test> & "co"'
    titles = page.evaluate('[...document.querySelectorAll("g.f > title")].map(t => t.textContent)')
    assert f"a<b>&\"c'd (4 samples, {100 * 4 / TOTAL:.2f}%)" in titles
    assert page.evaluate('document.querySelectorAll("script").length') == 1


def test_labels_fit_inside_their_frames_as_drawn(browser: Browser, tmp_path: Path) -> None:
    """The label width is estimated from a monospace font's 0.6 em; the browser measures it."""
    stacks = [(("main", f"{'long_function_name_' * 6}{n}"), n) for n in range(1, 60)]
    svg = render_flamegraph(stacks)
    path = tmp_path / "labels.svg"
    path.write_text(svg, encoding="utf-8")
    height = int(svg.split('height="', 1)[1].split('"', 1)[0])
    page = open_graph(browser, path, height)
    overflow_js = """[...document.querySelectorAll("g.f")].flatMap((g) => {
        const rect = g.querySelector("rect");
        const text = g.querySelector("text");
        if (!text || g.getAttribute("display") === "none" || !text.textContent) return [];
        const right = Number(rect.getAttribute("x")) + Number(rect.getAttribute("width"));
        const end = Number(text.getAttribute("x")) + text.getComputedTextLength();
        return end > right ? [[text.textContent, end - right]] : [];
    })"""
    assert page.evaluate('document.querySelectorAll("g.f text").length') > 20
    assert page.evaluate(overflow_js) == []
    # After a zoom the script writes the labels again, by the same rule.
    widest = max(read_frames(svg)[2:], key=lambda frame: frame.width)
    page.click(*centre(widest))
    selector = f'g.f[data-s="{widest.start}"][data-n="{widest.count}"] text'
    assert page.evaluate(f"[...document.querySelectorAll('{selector}')].map(t => t.textContent)"
                         ) == [widest.name]
    assert page.evaluate(overflow_js) == []
