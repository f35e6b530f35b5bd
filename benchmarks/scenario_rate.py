"""Scenario 2: the highest rate of events a tracer delivers with nothing lost.

The ``loop`` target calls ``hit_nop5(i, 7)`` at a fixed rate for D seconds, once its probe is
in. Each tracer streams both arguments of every call, with its default buffers:
- rawprobe ``attach --json -o /dev/null`` (accounting from its summary: events, lost);
- rawprobe as a library: a ``Tracer`` whose loop touches each event's values (_libreader.py);
- bpftrace ``printf("%d %d\\n", arg0, arg1)`` and bcc ``trace ... "%d %d", arg1, arg2``, both
  writing to a file whose lines are counted, plus the losses they report.
A run is lossless when every call was delivered and no loss was reported. The rate goes up by
doubling until a run loses, then is bisected between the best lossless and the lowest lossy
rate; the table gives the best lossless rate. A tracer is stopped (SIGINT) once it has caught
up (no CPU used for 0.3 s) after the target's loop. A rate is ">=" when the target itself could
not call faster (every probe hit costs it time).

Then the library's reader on its own: records captured from a live run, framed and decoded
again and again with no kernel involved (rawprobe._bpf.records.Decoder.decode_chunk, framing
and decoding in one pass as the library reads), and the CLI's JSON formatting on top.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._harness import (
    Context,
    Goal,
    LoopTarget,
    MeasurementError,
    ScenarioResult,
    Spawned,
    Table,
    bpftrace_account,
    capture_chunks,
    count_lines,
    goal_status,
    status_kib,
    wait_idle,
)

FUNCTION, MODE = "hit_nop5", "nop5"


@dataclass
class Trial:
    rate: int  # asked for
    achieved: float  # calls per second the target managed
    calls: int
    delivered: int
    lost: int
    peak_rss_kib: int

    @property
    def lossless(self) -> bool:
        return self.lost == 0 and self.delivered == self.calls


@dataclass
class Streamer:
    """One tracer under test: how to start it, and how to read what it delivered."""

    name: str
    start: Callable[[Context, int, Path], Spawned]
    account: Callable[[Spawned, Path], tuple[int, int]]
    first_rate: int


def _rawprobe_cli(ctx: Context, pid: int, _out: Path) -> Spawned:
    return Spawned(ctx.stage.argv("attach", "--json", "-o", "/dev/null", "-p", str(pid),
                                  f"p:{ctx.loop}:{FUNCTION} a=%di:s64 b=%si:s64"),
                   env=ctx.stage.env(), cwd=ctx.stage.directory, stdout=None)


def _rawprobe_summary(tracer: Spawned, _out: Path) -> tuple[int, int]:
    match = re.search(r"rawprobe: (\d+) events?, (\d+) lost", tracer.stderr_text)
    if not match:
        raise MeasurementError(f"no summary from rawprobe: {tracer.stderr_text[-300:]}")
    return int(match.group(1)), int(match.group(2))


def _rawprobe_library(ctx: Context, pid: int, _out: Path) -> Spawned:
    return Spawned(ctx.stage.script("_libreader.py", str(pid),
                                    f"p:{ctx.loop}:{FUNCTION} a=%di:s64 b=%si:s64"),
                   env=ctx.stage.env(), cwd=ctx.stage.directory)


def _library_account(tracer: Spawned, _out: Path) -> tuple[int, int]:
    line = next((text for text in tracer.stdout_rest if text.startswith("{")), None)
    if line is None:
        raise MeasurementError(f"no result from _libreader: {tracer.stderr_text[-300:]}")
    data = json.loads(line)
    return int(data["events"]), int(data["lost"])


def _bpftrace(ctx: Context, pid: int, out: Path) -> Spawned:
    program = f'uprobe:{ctx.loop}:{FUNCTION} {{ printf("%d %d\\n", arg0, arg1); }}'
    return Spawned([ctx.peers["bpftrace"], "-p", str(pid), "-e", program], stdout=out)


def _bcc_trace(ctx: Context, pid: int, out: Path) -> Spawned:
    return Spawned([ctx.peers["bcc-trace"], "-p", str(pid),
                    f'{ctx.loop}:{FUNCTION} "%d %d", arg1, arg2'],
                   stdout=out, env=ctx.peer_env("bcc-trace"))


def _bcc_account(tracer: Spawned, out: Path) -> tuple[int, int]:
    delivered = count_lines(out, skip=lambda line: f" {FUNCTION} " not in line)
    lost = sum(int(n) for n in re.findall(r"[Ll]ost (\d+) samples", tracer.stderr_text))
    return delivered, lost


def streamers(ctx: Context) -> list[Streamer]:
    result = [
        Streamer("rawprobe --json -o /dev/null", _rawprobe_cli, _rawprobe_summary, 200_000),
        Streamer("rawprobe library (Tracer.poll)", _rawprobe_library, _library_account,
                 200_000),
    ]
    if "bpftrace" in ctx.peers:
        result.append(Streamer("bpftrace printf", _bpftrace, bpftrace_account, 200_000))
    if "bcc-trace" in ctx.peers:
        result.append(Streamer("bcc trace", _bcc_trace, _bcc_account, 50_000))
    return result


def trial(ctx: Context, streamer: Streamer, rate: int, seconds: float) -> Trial:
    """One run at ``rate`` calls/s for ``seconds``."""
    calls = max(1000, int(rate * seconds))
    output = ctx.scratch("rate-") / "out"
    with LoopTarget(ctx.loop, calls, rate, MODE, wait=True, linger_ms=120_000) as target, \
            streamer.start(ctx, target.pid, output) as tracer:
        report = target.result(120, tracer)
        wait_idle(tracer.pid, quiet=0.3, timeout=120)
        peak = status_kib(tracer.pid, "VmHWM")
        tracer.stop()
        delivered, lost = streamer.account(tracer, output)
    achieved = report.calls / (report.elapsed_ns / 1e9)
    return Trial(rate, achieved, calls, delivered, lost, peak)


def search(ctx: Context, streamer: Streamer, seconds: float, refine: int,
           ceiling: int) -> tuple[Trial | None, list[Trial]]:
    """The best lossless trial found (doubling, then bisecting), and every trial made."""
    trials: list[Trial] = []
    best: Trial | None = None
    worst: Trial | None = None  # the lowest lossy rate
    rate = streamer.first_rate

    def attempt(at: int) -> Trial:
        nonlocal best, worst
        ctx.log(f"rate: {streamer.name} at {at:,}/s")
        result = trial(ctx, streamer, at, seconds)
        trials.append(result)
        if result.lossless:
            if best is None or result.rate > best.rate:
                best = result
        elif worst is None or result.rate < worst.rate:
            worst = result
        return result

    first = attempt(rate)
    if first.lossless:
        while rate < ceiling and attempt(min(ceiling, rate * 2)).lossless:
            rate = min(ceiling, rate * 2)
            # The target could not go faster: more asked for would not be more delivered.
            if trials[-1].achieved < 0.9 * trials[-1].rate:
                return best, trials
    else:
        while rate > 1000 and not attempt(rate // 2).lossless:
            rate //= 2
    for _ in range(refine):
        if best is None or worst is None:
            break
        attempt(int(math.sqrt(best.rate * worst.rate)))
    return best, trials


def _decode_only(ctx: Context, seconds: float) -> dict[str, float]:
    """Records per second of the reader alone, on records captured from a live run."""
    from rawprobe._bpf.records import Decoder
    from rawprobe._output.format import EventFormatter

    chunks, layouts = capture_chunks(ctx.loop, 200_000)
    events = [event for chunk in chunks for event in Decoder(layouts).decode_chunk(chunk)[0]]
    total = len(events)
    rates: dict[str, float] = {}

    def measure(name: str, body: Callable[[], int]) -> None:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            done += body()
        rates[name] = done / (time.perf_counter() - started)

    decoder = Decoder(layouts)  # as the library's read path keeps one
    measure("split+decode", lambda: sum(len(decoder.decode_chunk(chunk)[0])
                                        for chunk in chunks))
    formatter = EventFormatter()
    def json_lines() -> int:  # formatted in one batch, as the CLI formats what it reads
        formatter.lines(events, True)
        return len(events)

    measure("json", json_lines)
    rates["records"] = total
    rates["chunks"] = len(chunks)
    return rates


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(2, "Delivered events per second, nothing lost",
                            __doc__.split("\n\n", 1)[1].strip())
    seconds = 0.5 if ctx.quick else 2.0
    refine = 1 if ctx.quick else 3
    ceiling = 1_600_000
    table = Table(f"highest lossless rate ({seconds:g} s runs, nop5 site, two integer "
                  "arguments)", ["tracer", "events/s", "lowest lossy rate", "runs",
                                 "peak RSS at best", "trials (rate: delivered/calls, lost)"])
    best_rates: dict[str, float] = {}
    peaks: dict[str, int] = {}
    all_trials: dict[str, list[Trial]] = {}
    for streamer in streamers(ctx):
        try:
            best, trials = search(ctx, streamer, seconds, refine, ceiling)
        except MeasurementError as error:
            table.add(streamer.name, "failed", "", "", "", str(error)[-240:])
            continue
        all_trials[streamer.name] = trials
        lossy = [t.rate for t in trials if not t.lossless]
        capped = best is not None and best.achieved < 0.9 * best.rate
        shown = "none" if best is None else (
            f">= {best.achieved:,.0f} (target's limit)" if capped else f"{best.rate:,}")
        table.add(streamer.name, shown, f"{min(lossy):,}" if lossy else "-", len(trials),
                  f"{best.peak_rss_kib / 1024:.0f} MiB" if best else "-",
                  "; ".join(f"{t.rate // 1000}k: {t.delivered:,}/{t.calls:,}, {t.lost:,}"
                            for t in sorted(trials, key=lambda t: t.rate)))
        if best is not None:
            best_rates[streamer.name] = best.achieved if capped else best.rate
            peaks[streamer.name] = best.peak_rss_kib
    result.tables.append(table)
    ctx.shared["lossless"] = {name: (rate, peaks.get(name, 0))
                              for name, rate in best_rates.items()}
    for name, rate in best_rates.items():
        key = name.split()[0].rstrip(":") + ("_library" if "library" in name else "")
        result.numbers[f"lossless_per_s.{key}"] = rate

    ours = best_rates.get("rawprobe --json -o /dev/null")
    library = best_rates.get("rawprobe library (Tracer.poll)")
    bpftrace = best_rates.get("bpftrace printf")
    bcc = best_rates.get("bcc trace")
    ratios = Table("ratios (same run)", ["pair", "ratio"])
    for label, mine in (("rawprobe CLI", ours), ("rawprobe library", library)):
        for peer, theirs in (("bpftrace printf", bpftrace), ("bcc trace", bcc)):
            if mine and theirs:
                ratios.add(f"{label} / {peer}", f"{mine / theirs:.2f}x")
    if ratios.rows:
        result.tables.append(ratios)
    result.goals.append(Goal(
        "CLI streaming >= 1.0x bpftrace printf's lossless rate",
        f"{ours / bpftrace:.2f}x ({ours:,.0f} vs {bpftrace:,.0f}/s)" if ours and bpftrace
        else "-", goal_status(None if not (ours and bpftrace) else ours >= bpftrace)))
    result.goals.append(Goal(
        "CLI streaming >= 5x bcc trace's lossless rate",
        f"{ours / bcc:.2f}x ({ours:,.0f} vs {bcc:,.0f}/s)" if ours and bcc else "-",
        goal_status(None if not (ours and bcc) else ours >= 5 * bcc)))

    ctx.log("rate: decode-only on captured records")
    rates = _decode_only(ctx, 0.5 if ctx.quick else 2.0)
    decode = Table(f"the reader alone, on {int(rates['records']):,} records captured in "
                   f"{int(rates['chunks']):,} reads of a live run (records/s)",
                   ["step", "records/s"])
    for name, label in (("split+decode", "Decoder.decode_chunk: the library's read path"),
                        ("json", "EventFormatter.lines: the CLI's --json formatting")):
        decode.add(label, f"{rates[name]:,.0f}")
        result.numbers[f"reader_per_s.{name}"] = rates[name]
    result.tables.append(decode)
    result.goals.append(Goal("library path decodes >= 2,000,000 records/s (decode only)",
                             f"{rates['split+decode']:,.0f}/s",
                             goal_status(rates["split+decode"] >= 2_000_000)))
    spurious = [f"{name}: {t.lost:,} of {t.calls:,} at {t.rate:,}/s"
                for name, trials_of in all_trials.items() if name.startswith("rawprobe")
                for t in trials_of if 0 < t.lost <= t.calls // 10_000]
    if spurious:
        result.notes.append(
            "rawprobe runs that lost a handful of records at rates its ring could absorb ("
            + "; ".join(spurious) + "): a reader that stalls, or a torn consumer position.")
    result.notes.append(
        "Default buffers: rawprobe's ring is 8 MiB (≈116,000 records of 72 bytes); bpftrace's "
        "and bcc's perf buffers are 64 pages per CPU. A run of D seconds at rate R is lossless "
        "when the reader keeps up, or when what it falls behind by fits in the buffer: rawprobe "
        f"can absorb ≈{116_000 / seconds:,.0f} events/s above its sustained rate over a "
        f"{seconds:g} s run, the perf buffers ≈{2 * 64 * 4096 / 40 / seconds:,.0f}.")
    return result
