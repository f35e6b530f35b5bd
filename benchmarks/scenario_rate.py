"""Scenario 2: the highest rate of events a tracer delivers with nothing lost.

The ``loop`` target calls ``hit_nop5(i, 7)`` at a fixed rate for D seconds, once its probe is
in. Each tracer streams both arguments of every call into a file, with its default buffers:
- rawprobe ``attach --json -o FILE`` and ``attach -o FILE`` (text), accounting from their
  summaries (events, lost);
- rawprobe ``record -o FILE``: the records as the kernel wrote them, nothing decoded
  (accounting from its summary: events = hits - lost);
- rawprobe as a library: a ``Tracer`` whose loop touches each event's values (_libreader.py);
- bpftrace ``printf("%d %d\\n", arg0, arg1)`` and bcc ``trace ... "%d %d", arg1, arg2``, both
  writing to a file whose lines are counted, plus the losses they report.
A run is lossless when every call was delivered and no loss was reported. The rate goes up by
doubling until a run loses, then is bisected between the best lossless and the lowest lossy
rate; the table gives the best lossless rate. A tracer is stopped (SIGINT) once it has caught
up (no CPU used for 0.3 s) after the target's loop.

Each tracer also gets one run flat out (the loop calling as fast as it can with the tracer
attached): its calls per second there are the target's ceiling under that tracer, which also
gives the tracer's cost per hit (the loop's CPU time per call, less the untraced loop's). A
tracer that loses nothing even flat out was never pushed to its own limit: its figure is a
lower bound ("≥"), and a ratio against it proves nothing ("inconclusive"). So is a ratio
against a peer whose figure is far from its figures in earlier runs on this host
(peer-history.json).

Then the library's reader on its own: records captured from a live run, framed and decoded
again and again with no kernel involved (rawprobe._bpf.records.Decoder.decode_chunk, framing
and decoding in one pass as the library reads), the same as batches whose columns are read
(Batch.columns(): strided views of the records, each made into a list), and the CLI's
formatting on top.
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
    Figure,
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
    rate_goal,
    status_kib,
    wait_idle,
)

FUNCTION, MODE = "hit_nop5", "nop5"
FLAT_OUT_CALLS = 1_500_000


@dataclass
class Trial:
    rate: int  # asked for (0: flat out)
    achieved: float  # calls per second the target managed
    calls: int
    delivered: int
    lost: int
    peak_rss_kib: int
    cpu_ns_per_call: float  # the target thread's CPU time per call

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
    peer: bool = False


def _rawprobe_cli(*options: str) -> Callable[[Context, int, Path], Spawned]:
    def start(ctx: Context, pid: int, out: Path) -> Spawned:
        return Spawned(ctx.stage.argv("attach", *options, "-o", str(out), "-p", str(pid),
                                      f"p:{ctx.loop}:{FUNCTION} a=%di:s64 b=%si:s64"),
                       env=ctx.stage.env(), cwd=ctx.stage.directory, stdout=None)
    return start


def _rawprobe_summary(tracer: Spawned, _out: Path) -> tuple[int, int]:
    match = re.search(r"rawprobe: (\d+) events?, (\d+) lost", tracer.stderr_text)
    if not match:
        raise MeasurementError(f"no summary from rawprobe: {tracer.stderr_text[-300:]}")
    return int(match.group(1)), int(match.group(2))


def _rawprobe_record(ctx: Context, pid: int, out: Path) -> Spawned:
    return Spawned(ctx.stage.argv("record", "-o", str(out), "-p", str(pid),
                                  f"p:{ctx.loop}:{FUNCTION} a=%di:s64 b=%si:s64"),
                   env=ctx.stage.env(), cwd=ctx.stage.directory, stdout=None)


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


JSON, TEXT, RECORD, LIBRARY = ("rawprobe --json -o FILE", "rawprobe -o FILE (text)",
                               "rawprobe record -o FILE", "rawprobe library (Tracer.poll)")
BPFTRACE, BCC = "bpftrace printf", "bcc trace"


def streamers(ctx: Context) -> list[Streamer]:
    result = [
        Streamer(JSON, _rawprobe_cli("--json"), _rawprobe_summary, 200_000),
        Streamer(TEXT, _rawprobe_cli(), _rawprobe_summary, 200_000),
        Streamer(RECORD, _rawprobe_record, _rawprobe_summary, 400_000),
        Streamer(LIBRARY, _rawprobe_library, _library_account, 200_000),
    ]
    if "bpftrace" in ctx.peers:
        result.append(Streamer(BPFTRACE, _bpftrace, bpftrace_account, 200_000, peer=True))
    if "bcc-trace" in ctx.peers:
        result.append(Streamer(BCC, _bcc_trace, _bcc_account, 50_000, peer=True))
    return result


def trial(ctx: Context, streamer: Streamer, rate: int, seconds: float,
          calls: int | None = None) -> Trial:
    """One run at ``rate`` calls/s (0: flat out) for ``seconds`` (or ``calls`` calls)."""
    calls = calls or max(1000, int(rate * seconds))
    output = ctx.scratch("rate-") / "out"
    with LoopTarget(ctx.loop, calls, rate, MODE, wait=True, linger_ms=120_000) as target, \
            streamer.start(ctx, target.pid, output) as tracer:
        report = target.result(120, tracer)
        wait_idle(tracer.pid, quiet=0.3, timeout=120)
        peak = status_kib(tracer.pid, "VmHWM")
        tracer.stop()
        delivered, lost = streamer.account(tracer, output)
    achieved = report.calls / (report.elapsed_ns / 1e9)
    return Trial(rate, achieved, calls, delivered, lost, peak, report.cpu_ns / report.calls)


def search(ctx: Context, streamer: Streamer, seconds: float, refine: int,
           ceiling: int) -> tuple[Trial | None, list[Trial]]:
    """The best lossless trial found (doubling, then bisecting, up to ``ceiling``), and every
    trial made."""
    trials: list[Trial] = []
    best: Trial | None = None
    worst: Trial | None = None  # the lowest lossy rate
    rate = min(streamer.first_rate, ceiling)

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
    """Records (or values) per second of the reader alone, on records captured from a live
    run."""
    from rawprobe._bpf.records import Decoder
    from rawprobe._output.format import EventFormatter

    chunks, layouts = capture_chunks(ctx.loop, 200_000)
    decoder = Decoder(layouts)  # as the library's read path keeps one
    total = sum(len(decoder.decode_chunk(chunk)[0]) for chunk in chunks)
    rates: dict[str, float] = {}

    def measure(name: str, body: Callable[[], int]) -> None:
        best = 0.0
        for _ in range(3):  # the best of three: the host is shared, noise only slows
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 3:
                done += body()
            best = max(best, done / (time.perf_counter() - started))
        rates[name] = best

    measure("split+decode", lambda: sum(len(decoder.decode_chunk(chunk)[0])
                                        for chunk in chunks))

    def columns() -> int:
        values = 0
        for chunk in chunks:
            for batch in decoder.batches(chunk)[0]:
                for batch_of_one in batch.split():
                    for column in batch_of_one.columns().values():
                        values += len(list(column))
        return values

    measure("columns", columns)
    formatter = EventFormatter()

    def lines(as_json: bool) -> Callable[[], int]:
        def body() -> int:  # formatted as the CLI formats what it reads
            for chunk in chunks:
                for batch in decoder.batches(chunk)[0]:
                    formatter.batch_lines(batch, as_json)
            return total
        return body

    measure("json", lines(True))
    measure("text", lines(False))
    rates["records"] = total
    rates["chunks"] = len(chunks)
    return rates


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(2, "Delivered events per second, nothing lost",
                            __doc__.split("\n\n", 1)[1].strip())
    seconds = 0.5 if ctx.quick else 2.0
    refine = 1 if ctx.quick else 3
    untraced = trial_untraced(ctx)
    table = Table(f"highest lossless rate ({seconds:g} s runs, nop5 site, two integer "
                  "arguments, into a file)",
                  ["tracer", "events/s", "lowest lossy rate", "flat out: calls/s, kept",
                   "ns per hit", "runs", "peak RSS at best",
                   "trials (rate: delivered/calls, lost)"])
    figures: dict[str, Figure] = {}
    per_hit: dict[str, float] = {}
    flat_kept: dict[str, tuple[float, float]] = {}
    peaks: dict[str, tuple[float, int]] = {}
    for streamer in streamers(ctx):
        try:
            ctx.log(f"rate: {streamer.name} flat out")
            flat = trial(ctx, streamer, 0, seconds,
                         calls=FLAT_OUT_CALLS // (4 if ctx.quick else 1))
            best, trials = search(ctx, streamer, seconds, refine,
                                  max(1000, int(flat.achieved)))
        except MeasurementError as error:
            table.add(streamer.name, "failed", "", "", "", "", "", str(error)[-240:])
            continue
        kept = flat.delivered / flat.calls if flat.calls else 0.0
        flat_kept[streamer.name] = (flat.achieved, kept)
        per_hit[streamer.name] = flat.cpu_ns_per_call - untraced
        lossy = [t.rate for t in trials if not t.lossless]
        # Never pushed to its own limit: lossless flat out, or no loss below the target's
        # ceiling under it.
        bounded = flat.lossless or (best is not None and not [r for r in lossy
                                                               if r <= flat.achieved])
        if best is not None:
            value = max(best.achieved if best.achieved < 0.9 * best.rate else best.rate,
                        flat.achieved if flat.lossless else 0)
            unusual = (ctx.history.check(f"lossless_per_s.{streamer.name}", value)
                       if streamer.peer and not ctx.quick else "")
            figures[streamer.name] = Figure(value, bounded, unusual)
            peaks[streamer.name] = (value, best.peak_rss_kib)
        shown = "none" if streamer.name not in figures else figures[streamer.name].text()
        table.add(streamer.name, shown, f"{min(lossy):,}" if lossy else "-",
                  f"{flat.achieved:,.0f}, {100 * kept:.1f}%"
                  + ("" if flat.lossless else f" ({flat.lost:,} lost)"),
                  f"{per_hit[streamer.name]:.0f}", len(trials) + 1,
                  f"{best.peak_rss_kib / 1024:.0f} MiB" if best else "-",
                  "; ".join(f"{t.rate // 1000}k: {t.delivered:,}/{t.calls:,}, {t.lost:,}"
                            for t in sorted(trials, key=lambda t: t.rate)))
    result.tables.append(table)
    ctx.shared["lossless"] = {name: peaks[name] for name in peaks}
    ctx.shared["per_hit_rate_scenario"] = per_hit
    for name, figure in figures.items():
        result.numbers[f"lossless_per_s.{name}"] = figure.value
    for name, (_achieved, kept) in flat_kept.items():
        result.numbers[f"flat_out_kept.{name}"] = kept

    ratios = Table("ratios of lossless rates (same run)", ["pair", "ratio"])
    for ours in (JSON, TEXT, RECORD, LIBRARY):
        for peer in (BPFTRACE, BCC):
            if ours in figures and peer in figures:
                mine, theirs = figures[ours], figures[peer]
                ratios.add(f"{ours} / {peer}", (">= " if mine.at_least else "")
                           + f"{mine.value / theirs.value:.2f}x"
                           + (" (theirs a lower bound)" if theirs.at_least else ""))
    if ratios.rows:
        result.tables.append(ratios)
    for ours, label in ((JSON, "--json"), (TEXT, "text")):
        result.goals.append(rate_goal(
            f"{label} to a file lossless >= 1.5x bpftrace printf's lossless rate",
            figures.get(ours), figures.get(BPFTRACE), 1.5, "bpftrace printf"))
    if BCC in ctx.peers or "bcc-trace" in ctx.peers:
        result.goals.append(rate_goal("CLI streaming (--json) >= 5x bcc trace's lossless rate",
                                      figures.get(JSON), figures.get(BCC), 5.0, "bcc trace"))
    record = flat_kept.get(RECORD)
    result.goals.append(Goal(
        "record: lossless at the full rate a NOP5 site produces (flat out)",
        "-" if record is None else f"{record[0]:,.0f} calls/s, {100 * record[1]:.2f}% kept"
        + "".join(f"; {name}: {100 * kept:.1f}% at {achieved:,.0f}/s"
                  for name, (achieved, kept) in flat_kept.items() if name in (BPFTRACE, BCC)),
        goal_status(None if record is None else record[1] == 1.0)))
    result.notes.append(
        "ns per hit: the target's CPU time per call flat out with the tracer attached, less "
        f"the untraced loop's ({untraced:.1f} ns): the tracer's cost to the traced program, "
        "beside its rate.")

    ctx.log("rate: decode-only on captured records")
    rates = _decode_only(ctx, 0.6 if ctx.quick else 3.0)
    decode = Table(f"the reader alone, on {int(rates['records']):,} records captured in "
                   f"{int(rates['chunks']):,} reads of a live run (best of 3)",
                   ["step", "rate"])
    for name, label, unit in (
            ("split+decode", "Decoder.decode_chunk: the library's read path (events)",
             "records/s"),
            ("columns", "Batch.columns(): every column of every batch, as lists", "values/s"),
            ("json", "EventFormatter.batch_lines: the CLI's --json formatting", "records/s"),
            ("text", "EventFormatter.batch_lines: the CLI's text formatting", "records/s")):
        decode.add(label, f"{rates[name]:,.0f} {unit}")
        result.numbers[f"reader_per_s.{name}"] = rates[name]
    result.tables.append(decode)
    result.goals.append(Goal("library path decodes >= 2,000,000 records/s (decode only)",
                             f"{rates['split+decode']:,.0f}/s",
                             goal_status(rates["split+decode"] >= 2_000_000)))
    result.goals.append(Goal("batches as columns >= 10,000,000 values/s",
                             f"{rates['columns']:,.0f} values/s",
                             goal_status(rates["columns"] >= 10_000_000)))
    result.notes.append(
        "Default buffers: rawprobe's ring is 8 MiB (≈116,000 records of 72 bytes); bpftrace's "
        "and bcc's perf buffers are 64 pages per CPU. A run of D seconds at rate R is lossless "
        "when the reader keeps up, or when what it falls behind by fits in the buffer: rawprobe "
        f"can absorb ≈{116_000 / seconds:,.0f} events/s above its sustained rate over a "
        f"{seconds:g} s run, the perf buffers ≈{2 * 64 * 4096 / 40 / seconds:,.0f}.")
    return result


def trial_untraced(ctx: Context) -> float:
    """The untraced loop's CPU time per call, flat out (median of 3)."""
    times = []
    for _ in range(3):
        with LoopTarget(ctx.loop, 1_000_000, 0, MODE, wait=False) as target:
            report = target.result(60)
        times.append(report.cpu_ns / report.calls)
    return sorted(times)[1]
