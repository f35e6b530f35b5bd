"""The floor: rawprobe's ``rp_empty`` program (it returns 0 and does nothing else) on one
uprobe, planted exactly as rawprobe plants a single probe (a perf-event uprobe from the uprobe
PMU, the program attached with a BPF cookie through libbpf). A hit then costs the trap and
running an empty BPF program: what no tracer built on uprobes can go below.

Run as root: ``python benchmarks/_floor.py FILE SYMBOL PID``; prints ``ready`` on stdout once
the probe is planted, and removes it at SIGINT or SIGTERM.
"""

from __future__ import annotations

import ctypes
import signal
import sys


def main() -> None:
    from rawprobe._symbols import resolve_location
    from rawprobe._sys.bpfobject import BpfObject, object_bytes
    from rawprobe._sys.libbpf import PerfEventOpts
    from rawprobe._sys.uprobe import UprobeEvent

    path, symbol, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # taken by sigwait() below
    (location,) = resolve_location(path, symbol)
    with BpfObject(object_bytes()) as obj:
        for name in ("rp_fork", "rp_exec", "rp_exit", "rp_entry", "rp_return",
                     "rp_entry_sleepable", "rp_return_sleepable", "rp_entry_multi",
                     "rp_return_multi", "rp_entry_multi_sleepable",
                     "rp_return_multi_sleepable"):
            obj.lib.program_set_autoload(obj.program(name), False)
        obj.load()
        event = UprobeEvent(path, location.file_offset, pid=pid)
        opts = PerfEventOpts(sz=ctypes.sizeof(PerfEventOpts), bpf_cookie=0)
        link = obj.lib.program_attach_perf_event_opts(obj.program("rp_empty"), event.fd,
                                                      ctypes.byref(opts))
        event.detach()  # the link owns the descriptor now
        print("ready", flush=True)
        try:
            signal.sigwait(stops)
        finally:
            obj.lib.link_destroy(link)


if __name__ == "__main__":
    main()
