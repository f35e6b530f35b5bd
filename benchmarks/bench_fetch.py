"""Cost per event of a probe with several fetch-args and one string: rawprobe vs bpftrace.

The target calls ``hit_str(long a, long b, long c, const char *s)`` N times in a tight loop
and prints how long its loop took. Each tracer streams ``a b c s`` for every call to
/dev/null; the extra time per call in the traced program is the tracer's cost per event (the
trap plus its BPF program), and lost events are reported. All runs happen in one go, so the
ratios are comparable even on a noisy machine.

Run as root: python benchmarks/bench_fetch.py [CALLS] [REPEATS]
"""

from __future__ import annotations

import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_loop, host_description

ROOT = Path(__file__).resolve().parent.parent


def run_target(loop: Path, calls: int) -> float:
    out = subprocess.run([str(loop), str(calls), "0", "str"], capture_output=True, text=True,
                         check=True).stdout
    return float(out.split("elapsed_ns=")[1].split()[0])


def wait_for(proc: subprocess.Popen[str], needle: str, stream: str) -> str:
    pipe = proc.stderr if stream == "stderr" else proc.stdout
    assert pipe is not None
    seen = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = pipe.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    proc.kill()
    raise RuntimeError(f"tracer did not start:\n{seen}")


def traced_rawprobe(loop: Path, calls: int) -> tuple[float, str]:
    word = f"p:{loop}:hit_str a=%di:s64 b=%si:s64 c=%dx:s64 s=+0(%cx):string"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rawprobe", "attach", "--json", "-o", "/dev/null", word],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
    )
    wait_for(proc, "rawprobe: tracing", "stderr")
    elapsed = run_target(loop, calls)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    summary = [line for line in err.splitlines() if " events, " in line]
    return elapsed, summary[-1].replace("rawprobe: ", "") if summary else err.strip()


def traced_bpftrace(loop: Path, calls: int, bpftrace: str) -> tuple[float, str]:
    program = (f'uprobe:{loop}:hit_str {{ printf("%d %d %d %s\\n", arg0, arg1, arg2, '
               "str(arg3)); }")
    proc = subprocess.Popen([bpftrace, "-e", program], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(proc, "Attaching", "stdout")
    time.sleep(1.0)  # bpftrace prints before it has attached
    lines = 0
    assert proc.stdout is not None
    import threading

    def count() -> None:
        nonlocal lines
        assert proc.stdout is not None
        for _ in proc.stdout:
            lines += 1

    counter = threading.Thread(target=count)
    counter.start()
    elapsed = run_target(loop, calls)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    counter.join()
    err = proc.stderr.read() if proc.stderr else ""
    lost = [line for line in err.splitlines() if "lost" in line.lower()]
    return elapsed, f"{lines:,} lines" + (f", {lost[0].strip()}" if lost else ", 0 lost reported")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    loop = build_loop()
    bpftrace = shutil.which("bpftrace")
    print(host_description())
    print(f"{calls:,} calls of hit_str(a, b, c, s); fields a b c s; {repeats} repeats, medians")
    results: dict[str, list[float]] = {"untraced": [], "rawprobe": []}
    notes: dict[str, str] = {}
    if bpftrace:
        results["bpftrace"] = []
    for _ in range(repeats):
        results["untraced"].append(run_target(loop, calls))
        elapsed, notes["rawprobe"] = traced_rawprobe(loop, calls)
        results["rawprobe"].append(elapsed)
        if bpftrace:
            elapsed, notes["bpftrace"] = traced_bpftrace(loop, calls, bpftrace)
            results["bpftrace"].append(elapsed)
    base = statistics.median(results["untraced"])
    per_event = {}
    print(f"{'tracer':<10} {'loop time':>12} {'cost/event':>12}  notes")
    for name, times in results.items():
        median = statistics.median(times)
        per_event[name] = (median - base) / calls
        print(f"{name:<10} {median / 1e6:>10.1f}ms {per_event[name]:>10.0f}ns  "
              f"{notes.get(name, '')}")
    if bpftrace:
        ratio = per_event["rawprobe"] / per_event["bpftrace"]
        print(f"rawprobe / bpftrace cost per event: {ratio:.2f}")


if __name__ == "__main__":
    main()
