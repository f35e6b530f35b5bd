"""Flame graph SVG: geometry against counts computed independently, order, nesting, escaping,
determinism, and the data the embedded script zooms and searches over."""

from __future__ import annotations

import random
import re
import time

import pytest
from flamegraph_svg import (
    PLOT_LEFT,
    PLOT_WIDTH_MARGIN,
    expected_frames,
    parse_svg,
    read_frames,
    script_config,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe._errors import UsageError
from rawprobe._output.flamegraph import (
    CHAR_WIDTH,
    FRAME_HEIGHT,
    LABEL_PAD,
    SEARCH_COLOR,
    frame_label,
    parse_folded,
    render_flamegraph,
)

SVG_NS = "{http://www.w3.org/2000/svg}"
# Coordinates are written with two decimals, each rounded on its own.
TOLERANCE = 0.011

PROFILE = """\
main;run;parse_args 10
main;run;work;compute 50
main;run;work;io_wait 25
main;run;work;compute;std::vector<int>::at 8
main;init 7
main;run;work 5
"""


# -- parsing ---------------------------------------------------------------------------------

def test_parse_folded_reads_frames_and_counts() -> None:
    text = "a;b;c 3\r\n\n  \nx 1\noperator new(unsigned long);main\t12\n"
    assert parse_folded(text) == [
        (("a", "b", "c"), 3),
        (("x",), 1),
        (("operator new(unsigned long)", "main"), 12),
    ]


@pytest.mark.parametrize("line", ["a;b", "a;b -1", "a;b 1.5", "a;b x", "7", "a;b ³"])
def test_parse_folded_names_the_bad_line(line: str) -> None:
    with pytest.raises(UsageError, match="line 2"):
        parse_folded(f"ok 1\n{line}\n")


# -- geometry --------------------------------------------------------------------------------

def check_geometry(stacks: list[tuple[tuple[str, ...], int]], width: int = 1200) -> None:
    """Every frame drawn where and as wide as its counts say, and nothing else drawn."""
    svg = render_flamegraph(stacks, width=width, min_width=0)
    frames = read_frames(svg)
    expected = expected_frames(stacks)
    total = expected[("all",)].count
    scale = (width - PLOT_WIDTH_MARGIN) / total
    assert sorted(frame.path for frame in frames) == sorted(expected)
    for frame in frames:
        want = expected[frame.path]
        assert frame.count == want.count, frame.path
        assert frame.start == want.start, frame.path
        assert frame.width == pytest.approx(want.count * scale, abs=TOLERANCE), frame.path
        assert frame.x == pytest.approx(PLOT_LEFT + want.start * scale, abs=TOLERANCE)
        share = 100 * want.count / total
        assert frame.title == f"{frame.name} ({want.count:,} samples, {share:.2f}%)"


def test_widths_are_proportional_to_counts() -> None:
    check_geometry([(stack, count) for stack, count in parse_folded(PROFILE)])


def test_frame_widths_by_hand() -> None:
    frames = {frame.path: frame for frame in read_frames(render_flamegraph(parse_folded(PROFILE)))}
    scale = 1180 / 105
    assert frames[("all",)].width == 1180.0
    assert frames[("all", "main", "run")].width == pytest.approx(98 * scale, abs=TOLERANCE)
    # work's own 5 samples come first, then compute (50 + 8) and io_wait (25)
    work = frames[("all", "main", "run", "work")]
    compute = frames[("all", "main", "run", "work", "compute")]
    assert work.width == pytest.approx(88 * scale, abs=TOLERANCE)
    assert compute.x == pytest.approx(work.x + 5 * scale, abs=TOLERANCE)
    assert compute.width == pytest.approx(58 * scale, abs=TOLERANCE)


names = st.sampled_from(["a", "b", "c", "main", "a_b", "A", "z", "b;", "<x>", "é"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(names.filter(lambda n: ";" not in n), max_size=6)
                          .map(tuple), st.integers(0, 1000)), min_size=1, max_size=40))
def test_geometry_of_random_profiles(stacks: list[tuple[tuple[str, ...], int]]) -> None:
    if sum(count for _, count in stacks) == 0:
        return
    check_geometry(stacks)


def test_identical_stacks_merge() -> None:
    frames = read_frames(render_flamegraph([(("a", "b"), 3), (("a", "c"), 1), (("a", "b"), 4)]))
    assert [(frame.path, frame.count) for frame in frames] == [
        (("all",), 8), (("all", "a"), 8), (("all", "a", "b"), 7), (("all", "a", "c"), 1)
    ]


def test_siblings_are_ordered_by_name() -> None:
    stacks = [(("main", name), 10) for name in ["zeta", "alpha", "Mid", "_x", "alpha2", "beta"]]
    frames = [f for f in read_frames(render_flamegraph(stacks)) if len(f.path) == 3]
    left_to_right = [frame.name for frame in sorted(frames, key=lambda frame: frame.x)]
    assert left_to_right == ["Mid", "_x", "alpha", "alpha2", "beta", "zeta"]


def test_prefix_named_sibling_does_not_split_a_frame() -> None:
    # Sorting whole lines as text (flamegraph.pl) would put "foo!" between "foo" and "foo;x"
    # and draw two frames called foo.
    frames = read_frames(render_flamegraph([(("foo",), 1), (("foo!",), 1), (("foo", "x"), 1)]))
    assert [frame.path for frame in frames if frame.name == "foo"] == [("all", "foo")]


def test_callees_nest_inside_their_caller() -> None:
    random.seed(7)
    functions = [f"f{i}" for i in range(12)]
    stacks = [
        (tuple(random.choice(functions) for _ in range(random.randint(1, 15))),
         random.randint(1, 50))
        for _ in range(300)
    ]
    frames = read_frames(render_flamegraph(stacks))
    by_path = {frame.path: frame for frame in frames}
    for frame in frames:
        if len(frame.path) == 1:
            continue
        parent = by_path[frame.path[:-1]]
        assert frame.y == parent.y - FRAME_HEIGHT
        assert parent.x - TOLERANCE <= frame.x
        assert frame.x + frame.width <= parent.x + parent.width + 2 * TOLERANCE


def test_narrow_frames_are_left_out() -> None:
    stacks = [(("main", "big"), 100_000), (("main", "tiny", "deeper"), 1)]
    drawn = {frame.path for frame in read_frames(render_flamegraph(stacks, min_width=0.1))}
    assert ("all", "main", "tiny") not in drawn  # 1180 / 100001 px is under 0.1 px
    assert ("all", "main", "tiny", "deeper") not in drawn
    assert ("all", "main", "big") in drawn
    drawn = {frame.path for frame in read_frames(render_flamegraph(stacks, min_width=0))}
    assert ("all", "main", "tiny", "deeper") in drawn


def test_height_fits_the_deepest_stack() -> None:
    root = parse_svg(render_flamegraph([(tuple(f"f{i}" for i in range(30)), 1)]))
    height = float(root.get("height", ""))
    frames = root.findall(f".//{SVG_NS}g[@class='f']/{SVG_NS}rect")
    assert len(frames) == 31
    ys = [float(rect.get("y", "")) for rect in frames]
    assert min(ys) > 24  # below the title and buttons
    assert max(ys) + FRAME_HEIGHT < height - 12  # above the details line


# -- labels ----------------------------------------------------------------------------------

def test_labels_fit_their_frames() -> None:
    stacks = [(("main", "x" * n), n) for n in range(1, 80)]
    stacks.append((("main", "a_really_long_function_name_" * 4), 40))
    frames = read_frames(render_flamegraph(stacks))
    assert any(frame.label and frame.label.endswith("..") for frame in frames)
    assert any(frame.label is None for frame in frames)
    for frame in frames:
        if frame.label is None:
            assert frame_label(frame.name, frame.width) == ""
            continue
        assert len(frame.label) * CHAR_WIDTH <= frame.width - 2 * LABEL_PAD
        assert frame.label == frame.name or (
            frame.label.endswith("..") and frame.name.startswith(frame.label[:-2])
        )


def test_frame_label_cuts_and_drops() -> None:
    assert frame_label("compute", 200) == "compute"
    fit = int((60 - 2 * LABEL_PAD) // CHAR_WIDTH)
    assert frame_label("a" * 40, 60) == "a" * (fit - 2) + ".."
    assert frame_label("abcdef", 2 * LABEL_PAD + 2 * CHAR_WIDTH) == ""


# -- escaping --------------------------------------------------------------------------------

HOSTILE = [
    "std::map<int, std::string>::operator[]",
    "operator<<",
    "a&b &amp; c",
    '"quoted" \'single\'',
    "</title><script>alert(1)</script>",
    "]]> and </script>",
    "f(int) (const)",
    "ctl\x01\x1fchars",
]


def test_hostile_names_are_escaped() -> None:
    stacks = [(("main", name), 10 + index) for index, name in enumerate(HOSTILE)]
    svg = render_flamegraph(stacks, title="<b>&\"'</b>]]>")
    root = parse_svg(svg)
    assert root.find(f"{SVG_NS}text[@id='title']").text == "<b>&\"'</b>]]>"  # type: ignore[union-attr]
    assert len(root.findall(f".//{SVG_NS}script")) == 1
    assert svg.count("]]>") == 1  # the script's own CDATA end: nothing ends it early
    names = {frame.name for frame in read_frames(svg)}
    assert set(HOSTILE[:-1]) <= names
    assert "ctl\\x01\\x1fchars" in names  # XML 1.0 cannot carry control characters


def test_unencodable_characters_become_escapes() -> None:
    svg = render_flamegraph([(("bad\x00nul", "lone\udcffsurrogate"), 1)])
    svg.encode("utf-8")  # would raise on a lone surrogate
    names = [frame.name for frame in read_frames(svg)]
    assert names == ["all", "bad\\x00nul", "lone\\udcffsurrogate"]


# -- determinism and colors ------------------------------------------------------------------

def test_same_input_same_bytes_whatever_the_order() -> None:
    stacks = parse_folded(PROFILE)
    first = render_flamegraph(stacks)
    assert render_flamegraph(list(reversed(stacks))) == first
    assert render_flamegraph(stacks) == first


def test_colors_follow_names() -> None:
    stacks = [(("main", "shared", "leaf"), 5), (("other", "shared"), 3), (("main", "x"), 1)]
    frames = read_frames(render_flamegraph(stacks))
    fills: dict[str, set[str]] = {}
    for frame in frames:
        fills.setdefault(frame.name, set()).add(frame.fill)
    assert len(fills["shared"]) == 1
    assert len({next(iter(colors)) for colors in fills.values()}) > 1
    for frame in frames:
        red, green, blue = map(int, re.findall(r"\d+", frame.fill))
        assert 205 <= red <= 255 and green <= 230 and blue <= 55  # the warm palette
        assert frame.fill != SEARCH_COLOR


# -- what the script works on ----------------------------------------------------------------

def test_script_data_is_consistent() -> None:
    stacks = [*parse_folded(PROFILE), (("main", "f(int) (const)"), 3)]
    svg = render_flamegraph(stacks)
    config = script_config(svg)
    frames = read_frames(svg)
    total = sum(count for _, count in stacks)
    assert config["total"] == total
    assert config["plotWidth"] == 1180
    assert config["searchColor"] == SEARCH_COLOR
    scale = 1180 / total
    root_y = config["rootY"]
    assert isinstance(root_y, int)
    for frame in frames:
        # What the script reads: the span in samples, the depth from y, the name from the title.
        depth = (root_y - frame.y) / FRAME_HEIGHT
        assert depth == len(frame.path) - 1
        assert frame.x == pytest.approx(PLOT_LEFT + frame.start * scale, abs=TOLERANCE)
        assert frame.width == pytest.approx(frame.count * scale, abs=TOLERANCE)
        assert re.fullmatch(r".* \([\d,]+ samples, [\d.]+%\)", frame.title)
    assert "f(int) (const)" in {frame.name for frame in frames}


def test_script_is_inline_and_self_contained() -> None:
    svg = render_flamegraph(parse_folded(PROFILE))
    root = parse_svg(svg)
    scripts = root.findall(f".//{SVG_NS}script")
    assert len(scripts) == 1 and scripts[0].get("type") == "text/ecmascript"
    assert not any(
        attribute.endswith("href") for element in root.iter() for attribute in element.attrib
    )
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in svg
    for needed in ("Reset Zoom", "Search", "Reset Search"):
        assert needed in svg


def test_count_name_appears_in_hover_text() -> None:
    frames = read_frames(render_flamegraph([(("f",), 1234)], count_name="calls"))
    assert frames[1].title == "f (1,234 calls, 100.00%)"


# -- edges and errors ------------------------------------------------------------------------

def test_no_samples_still_makes_a_picture() -> None:
    for stacks in ([], [(("a",), 0)]):
        root = parse_svg(render_flamegraph(stacks))
        assert root.find(f"{SVG_NS}text[@id='details']").text == "No samples."  # type: ignore[union-attr]


def test_empty_stack_counts_towards_all() -> None:
    frames = read_frames(render_flamegraph([((), 3), (("a",), 1)]))
    assert [(frame.path, frame.count) for frame in frames] == [(("all",), 4), (("all", "a"), 1)]


@pytest.mark.parametrize("kwargs", [{"width": 50}, {"min_width": -1.0}, {"count_name": "x (y"}])
def test_bad_options_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        render_flamegraph([(("a",), 1)], **kwargs)  # type: ignore[arg-type]


def test_negative_count_is_refused() -> None:
    with pytest.raises(UsageError, match="negative"):
        render_flamegraph([(("a",), -1)])


# -- speed -----------------------------------------------------------------------------------

def test_hundred_thousand_stacks_render_quickly() -> None:
    rng = random.Random(3)
    functions = [f"ns::function_{i}" for i in range(2000)]
    stacks: dict[tuple[str, ...], int] = {}
    while len(stacks) < 100_000:
        depth = rng.randint(3, 30)
        stack = tuple(
            functions[int(rng.random() ** 3 * min(2000, 4 * (level + 1) ** 2))]
            for level in range(depth)
        )
        stacks[stack] = rng.randint(1, 1000)
    started = time.perf_counter()
    svg = render_flamegraph(list(stacks.items()))
    elapsed = time.perf_counter() - started
    parse_svg(svg)
    # Measured at about 0.7 s; the bound only catches a change of complexity.
    assert elapsed < 5.0, f"100,000 stacks took {elapsed:.2f} s"
