"""The library as tool authors use it: typed probes, iteration, asyncio, callbacks, stop(),
one-call measurements, and cleanup of a tracer left open."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import ROOT, bpf_link_ids_of, build_c

import rawprobe

LOOP = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) int work(int n) { asm volatile("" ::: "memory"); return n * 2; }
__attribute__((noinline)) void nap(int ms) { usleep(ms * 1000); }
int main(int argc, char **argv) {
    int times = argc > 1 ? atoi(argv[1]) : 5;
    int pause = argc > 2 ? atoi(argv[2]) : 0;
    for (int i = 0; i < times; i++) { work(i); if (pause) nap(pause); }
    return 0;
}
"""


@pytest.fixture(scope="module")
def program() -> Path:
    return build_c(LOOP, name="libtarget", flags=("-O1",))


def test_iterate_typed_probes(program: Path) -> None:
    with rawprobe.Tracer(command=[str(program), "5"]) as tracer:
        names = tracer.add(rawprobe.Uprobe(str(program), "work", fetch={"n": "%di:s32"}))
        tracer.add(rawprobe.Uretprobe(str(program), "work", fetch={"r": "$retval:s32"}),
                   filter="r >= 4")
        events = list(tracer.events(timeout=30))
        stats = tracer.stats()
    assert names == ["work"]
    entries = [e.args["n"] for e in events if e.event == "work"]
    returns = [e.args["r"] for e in events if e.event == "work__return"]
    assert entries == [0, 1, 2, 3, 4] and returns == [4, 6, 8]
    assert all(e.comm == "libtarget" and e.pid == e.tid for e in events)
    assert (stats.events, stats.filtered, stats.lost, stats.hits) == (8, 2, 0, 10)
    assert isinstance(events[0], rawprobe.Event) and events[0].values == (0,)


def test_asyncio(program: Path) -> None:
    async def collect() -> list[int]:
        async with rawprobe.Tracer(command=[str(program), "4", "20"]) as tracer:
            tracer.add(f"p:{program}:work n=%di:s32")
            # The loop stays free while waiting: this ticker runs alongside.
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.005)
                    ticks += 1

            task = asyncio.create_task(ticker())
            seen = [event.args["n"] async for event in tracer.aevents(timeout=30)]
            task.cancel()
            assert ticks > 3
            return seen

    assert asyncio.run(collect()) == [0, 1, 2, 3]


def test_callbacks_and_an_exception_in_one(program: Path) -> None:
    seen: list[int] = []
    tracer = rawprobe.Tracer(command=[str(program), "6"])
    tracer.add(f"p:{program}:work n=%di:s32")
    tracer.on_event(lambda event: seen.append(event.args["n"]))
    stats = tracer.run()
    assert seen == [0, 1, 2, 3, 4, 5] and stats.events == 6
    tracer.close()

    def explode(event: rawprobe.Event) -> None:
        raise RuntimeError("user code failed")

    tracer = rawprobe.Tracer(command=[str(program), "3", "50"])
    tracer.add(f"p:{program}:work n=%di:s32")
    tracer.on_event(explode)
    with pytest.raises(RuntimeError, match="user code failed"):
        tracer.run()
    assert bpf_link_ids_of(os.getpid()) == set()  # every probe removed on the way out
    with pytest.raises(rawprobe.ClosedError):
        tracer.add(f"p:{program}:work")


def test_stop_from_another_thread(program: Path) -> None:
    with rawprobe.Tracer(command=[str(program), "1000", "10"]) as tracer:
        tracer.add(f"p:{program}:work")
        timer = threading.Timer(0.5, tracer.stop)
        timer.start()
        started = time.monotonic()
        count = sum(1 for _ in tracer.events())
        assert time.monotonic() - started < 5
        assert 0 < count < 1000


def test_one_call_measurements(program: Path) -> None:
    counts = rawprobe.count(f"p:{program}:work", command=[str(program), "7"])
    assert counts == {"work": 7}
    by_value = rawprobe.count(f"p:{program}:work n=%di:s32", by="n",
                              command=[str(program), "3"])
    assert by_value == {("work", 0): 1, ("work", 1): 1, ("work", 2): 1}
    hist = rawprobe.latency(f"p:{program}:nap", command=[str(program), "3", "5"])
    assert hist["nap"].total == 3
    assert "@nap (ns):" in str(hist)
    sizes = rawprobe.histogram(f"p:{program}:work n=%di:s32", field="n",
                               command=[str(program), "8"])
    assert sizes.to_dict()["hist"][0]["buckets"][-1] == {"low": 4, "high": 8, "count": 4}


def test_tracer_left_open_is_cleaned_at_garbage_collection(program: Path) -> None:
    tracer = rawprobe.Tracer()
    tracer.add(f"p:{program}:work")
    tracer.start()
    assert len(bpf_link_ids_of(os.getpid())) == 1
    del tracer
    gc.collect()
    assert bpf_link_ids_of(os.getpid()) == set()


def test_tracer_left_open_is_cleaned_at_interpreter_exit(program: Path, tmp_path: Path) -> None:
    # The tracer starts a long command and the interpreter exits without closing it: the
    # finalizer must still end the command (and remove the probes).
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(f"""
        import rawprobe
        tracer = rawprobe.Tracer(command=["sleep", "60"])
        tracer.add("p:{program}:work")
        tracer.start()
        open({str(pid_file)!r}, "w").write(str(tracer.command_pid))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)
    command_pid = int(pid_file.read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{command_pid}"), "the traced command outlived its tracer"
