"""Removing probes: the tracefs backend removes a thousand sites in a moment (they share kernel
events), and while probes are being removed rawprobe still answers Ctrl-C: the first says what
it is doing, a second stops there and says what is left and how 'rawprobe probes --clean'
removes it."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from helpers import Background, build_c, run_rawprobe

from rawprobe._tracefs import find_tracefs, parse_definitions, parse_group

MANY = "\n".join(
    [f'__attribute__((noinline)) long fn{i:04d}(long v) {{ asm volatile(""); return v + {i}; }}'
     for i in range(1000)]
    + ["int main(void) { return 0; }"])


def my_definitions(pid: int) -> list[str]:
    with open(f"{find_tracefs()}/uprobe_events") as file:
        return [f"{d.group}/{d.event}" for d in parse_definitions(file.read())
                if (owner := parse_group(d.group)) is not None and owner.pid == pid]


@pytest.fixture(scope="module")
def many() -> str:
    return str(build_c(MANY, name="many", flags=("-O1",)))


def test_a_thousand_tracefs_sites_come_and_go_in_a_moment(many: str) -> None:
    background = Background("attach", "--backend", "tracefs", "--count", f"p:{many}:fn*")
    background.ready(timeout=60)
    assert len(my_definitions(background.proc.pid)) == 1000
    started = time.monotonic()
    background.finish(signal.SIGINT)
    assert time.monotonic() - started < 10  # minutes before they shared kernel events
    assert my_definitions(background.proc.pid) == []


def test_a_second_ctrl_c_while_removing_says_what_is_left(many: str) -> None:
    # Probes that read differently cannot share a kernel event: each costs a grace period
    # (~50 ms) to remove, 120 of them several seconds.
    words = [f"p:{many}:fn{i:04d} v{i}=%di:s64" for i in range(120)]
    background = Background("attach", "--backend", "tracefs", "--count", *words)
    background.ready(timeout=120)
    pid = background.proc.pid
    assert len(my_definitions(pid)) == 120
    background.proc.send_signal(signal.SIGINT)  # stop tracing: the removal starts
    time.sleep(0.3)
    background.proc.send_signal(signal.SIGINT)  # says it is removing
    time.sleep(0.2)
    background.proc.send_signal(signal.SIGINT)  # stops there
    try:
        _out, err = background.proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        background.proc.kill()
        raise
    assert background.proc.returncode == 130, err
    assert "removing the probes (Ctrl-C again to stop now" in err
    assert "still planted" in err and "rawprobe probes --clean" in err, err
    left = my_definitions(pid)
    assert left, "the removal finished before the second Ctrl-C: nothing to say"
    run_rawprobe("probes", "--clean", check_status=0)
    assert my_definitions(pid) == []
