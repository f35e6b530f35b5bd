"""How fast rawprobe's reader decodes records, and whether a real probe loses any.

1. A real probe (two integer args) on a function called in a tight loop by a program rawprobe
   starts; the library iterates the events without output. Prints probe hits, records
   delivered, records lost, and delivered records per second of the run.
2. The same records, captured once, decoded again and again with no kernel involved: the
   reader's own ceiling in records per second.

Run as root: python benchmarks/bench_reader.py [CALLS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_loop, host_description

from rawprobe._bpf.records import Decoder
from rawprobe._tracer import Tracer


def live_run(calls: int) -> tuple[float, int, list[bytes]]:
    loop = build_loop()
    chunks: list[bytes] = []
    with Tracer(command=[str(loop), str(calls)]) as tracer:
        tracer.add(f"p:{loop}:hit a=%di:s64 b=%si:s64")
        tracer.start()
        session = tracer._session
        assert session is not None
        ring = session.ring
        decoder = Decoder(tracer.layouts)  # as the library's read path keeps one
        delivered = 0
        started = time.perf_counter()
        while True:
            ring.wait(0.2)
            chunk = ring.read()
            if chunk:
                events, consumed = decoder.decode_chunk(chunk)
                delivered += len(events)
                ring.consume(consumed)
                if len(chunks) < 64:
                    chunks.append(chunk[:consumed])
            elif tracer.finished():
                delivered += len(tracer.drain())
                break
        elapsed = time.perf_counter() - started
        stats = tracer.stats()
        print(f"live: {calls:,} calls, {stats.hits:,} hits, {delivered:,} delivered, "
              f"{stats.lost:,} lost in {elapsed:.2f} s -> {delivered / elapsed:,.0f} records/s")
        return elapsed, delivered, chunks


def decode_only(chunks: list[bytes], layouts: object, seconds: float = 2.0) -> None:
    decoder = Decoder(layouts)  # type: ignore[arg-type]
    total = sum(len(decoder.decode_chunk(chunk)[0]) for chunk in chunks)
    decoded = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for chunk in chunks:
            decoded += len(decoder.decode_chunk(chunk)[0])
    elapsed = time.perf_counter() - started
    print(f"decode only: {decoded:,} records ({total:,} distinct) in {elapsed:.2f} s -> "
          f"{decoded / elapsed:,.0f} records/s (framing + decoding + event objects)")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    print(host_description())
    loop = build_loop()
    _elapsed, _delivered, chunks = live_run(calls)
    with Tracer() as tracer:  # only for its layouts: nothing is started
        tracer.add(f"p:{loop}:hit a=%di:s64 b=%si:s64")
        decode_only(chunks, tracer.layouts)


if __name__ == "__main__":
    main()
