"""The library path: a :class:`rawprobe.Tracer` streaming a probe's events to a loop that
touches each event's values and prints nothing, as a tool embedding rawprobe would.

Run as root: ``python benchmarks/_libreader.py PID PROBE``. Prints ``ready`` once the probe
is planted; at SIGINT or SIGTERM (or when PID exits) it drains the ring buffer and prints one
JSON object: ``events`` (delivered), ``lost``, ``hits``, ``rss_kib`` (peak resident memory).
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main() -> None:
    from rawprobe import Tracer

    pid, word = int(sys.argv[1]), sys.argv[2]
    stopped = False

    def handler(_signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True

    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    with Tracer(pid=pid) as tracer:
        tracer.add(word)
        tracer.watch(wake_read)
        tracer.start()
        print("ready", flush=True)
        values = 0
        while not stopped and not tracer.finished():
            for event in tracer.poll(1.0):
                values += len(event.values)
        for event in tracer.drain():
            values += len(event.values)
        stats = tracer.stats()
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"events": stats.events, "lost": stats.lost, "hits": stats.hits,
                      "rss_kib": peak, "values": values}), flush=True)


if __name__ == "__main__":
    main()
