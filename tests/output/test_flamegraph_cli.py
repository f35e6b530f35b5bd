"""``attach --count --stack --flamegraph``: the whole path, real probes to a picture.

A program calls leaf() through two callers a known number of times each; the SVG must parse,
give each caller a frame as wide as its share of the calls, and draw in a real browser.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

from flamegraph_svg import parse_svg, read_frames
from headless_chromium import chromium, decode_png
from helpers import Background, build_c, require_kernel_tracing, run_rawprobe

PROGRAM = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t go;
static void start(int sig) { (void)sig; go = 1; }
__attribute__((noinline)) int leaf(int x) { asm volatile("" ::: "memory"); return x + 1; }
__attribute__((noinline)) int left(int x) { int y = leaf(x); asm volatile(""); return y; }
__attribute__((noinline)) int right(int x) { int y = leaf(x); asm volatile(""); return y; }
int main(void) {
    int sum = 0;
    signal(SIGUSR1, start);
    puts("ready");
    fflush(stdout);
    while (!go) pause();
    for (int i = 0; i < 300; i++) sum += left(i);
    for (int i = 0; i < 100; i++) sum += right(i);
    printf("done %d\n", sum);
    fflush(stdout);
    while (1) pause(); /* alive until killed, so its stacks can be symbolized at the end */
}
"""


def test_flamegraph_from_real_stacks_parses_scales_and_renders(tmp_path: Path) -> None:
    require_kernel_tracing()
    program = build_c(PROGRAM, name="callers", flags=("-O1", "-fno-omit-frame-pointer",
                                                       "-fno-optimize-sibling-calls"))
    svg_path = tmp_path / "leaf.svg"
    target = subprocess.Popen([program], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline() == "ready\n"
        tracer = Background("attach", "-p", str(target.pid), "--count", "--stack",
                            "--flamegraph", str(svg_path), f"p:{program}:leaf")
        tracer.ready()
        target.send_signal(signal.SIGUSR1)
        assert target.stdout.readline().startswith("done")
        status, _out, err = tracer.finish(signal.SIGINT)
    finally:
        target.kill()
        target.wait()
    assert status == 0, err
    assert f"flame graph of 400 calls in {svg_path}" in err
    assert stat.S_IMODE(os.stat(svg_path).st_mode) == 0o600
    svg = svg_path.read_text()
    parse_svg(svg)  # well-formed XML
    frames = read_frames(svg)
    by_name: dict[str, list[float]] = {}
    for frame in frames:
        by_name.setdefault(frame.name.split("+")[0], []).append(frame.width)
    root = max(frame.width for frame in frames if frame.name == "all")
    # The event is the bottom frame, over every call; the callers share it 3:1.
    assert sum(by_name["leaf"]) >= root - 0.02
    left, right = sum(by_name["left"]), sum(by_name["right"])
    assert abs(left / root - 0.75) < 0.01 and abs(right / root - 0.25) < 0.01
    counts = {frame.name.split("+")[0]: frame.count for frame in frames}
    assert counts["left"] == 300 and counts["right"] == 100

    height = int(svg.split('height="', 1)[1].split('"', 1)[0])
    with chromium() as browser:
        page = browser.new_page()
        page.goto(svg_path.as_uri(), 1200, height)
        assert page.exceptions() == []
        width, png_height, _rows = decode_png(page.screenshot())
        assert (width, png_height) == (1200, height)
        labels = page.evaluate("[...document.querySelectorAll('g.f text')]"
                               ".map((t) => t.textContent)")
        assert any(label.startswith("left") for label in labels)


def test_flamegraph_needs_counted_stacks() -> None:
    result = run_rawprobe("attach", "--count", "--flamegraph", "/tmp/x.svg", "p:libc:malloc",
                          check_status=2)
    assert "--count --stack" in result.stderr
