"""Where rawprobe's reader spends its time per event: cProfile over captured records.

Records of ``p:loop:hit_nop5 a=%di:s64 b=%si:s64`` are captured from a live run (read as a
live reader reads them), then framed, decoded and formatted as JSON again and again under
cProfile, with nothing else running in this process. Prints, per step, the nanoseconds per
record of each function that takes a noticeable share (own time and cumulative), so the cost
of one event can be read off directly.

For the command line as it runs, sample it with py-spy instead, e.g.
``py-spy record -r 1000 -f raw -o cli.txt -- python -m rawprobe attach --json -o /dev/null
-p PID 'p:LOOP:hit_nop5 a=%di:s64 b=%si:s64'`` while ``loop 0 300000 nop5`` runs.

Run as root: ``python -m benchmarks.profile_hotpath [SECONDS]``.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Callable

from ._harness import capture_chunks
from .common import build_loop


def profile(label: str, body: Callable[[], int], seconds: float) -> None:
    profiler = cProfile.Profile()
    records = 0
    started = time.perf_counter()
    profiler.enable()
    while time.perf_counter() - started < seconds:
        records += body()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n{label}: {records:,} records; {total / records * 1e9:,.0f} ns per record under "
          "the profiler (own time), by function:")
    rows = []
    for (file, line, name), (_cc, calls, own, cumulative, _callers) in \
            stats.stats.items():  # type: ignore[attr-defined]
        if own / total > 0.01:
            where = f"{file.rsplit('/', 2)[-1]}:{line}" if line else "(built-in)"
            rows.append((own, cumulative, calls, f"{name} {where}"))
    for own, cumulative, calls, name in sorted(rows, reverse=True):
        print(f"  {own / records * 1e9:8.0f} ns own {cumulative / records * 1e9:8.0f} ns cum "
              f"{calls / records:6.2f} calls/record  {name}")


def main() -> None:
    from rawprobe._bpf.records import Decoder
    from rawprobe._output.format import EventFormatter

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    chunks, layouts = capture_chunks(build_loop(), 200_000)
    decoder = Decoder(layouts)  # as the library's read path keeps one
    print(f"{sum(len(decoder.decode_chunk(chunk)[0]) for chunk in chunks):,} records in "
          f"{len(chunks)} reads")
    profile("framing + decoding (the library's read path)",
            lambda: sum(len(decoder.decode_chunk(chunk)[0]) for chunk in chunks), seconds)
    formatter = EventFormatter()

    def decode_and_format() -> int:
        done = 0
        for chunk in chunks:
            events = decoder.decode_chunk(chunk)[0]
            formatter.lines(events, True)
            done += len(events)
        return done

    profile("decoding + JSON lines (the CLI's --json path, without the write)",
            decode_and_format, seconds)


if __name__ == "__main__":
    main()
