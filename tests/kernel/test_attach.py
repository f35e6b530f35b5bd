"""rawprobe attach, end to end: real uprobes on a compiled program, through the CLI."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

from helpers import Background, bpf_link_ids_of, existing_bpf_link_ids, run_rawprobe

ENTRY = "p:{prog}:add a=%di:s32 b=%si:s32"
RETURN = "r:{prog}:add ret=$retval:s32"


def event_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


def test_entry_and_return_with_a_command(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("attach", ENTRY.format(prog=prog), RETURN.format(prog=prog),
                          "--", prog, check_status=0)
    lines = event_lines(result.stdout)
    assert len(lines) == 2, result.stdout
    assert lines[0].endswith(" add: a=1 b=2")
    assert lines[1].endswith(" add__return: ret=3")
    assert " main " in lines[0]
    assert "rawprobe: 2 events, 0 lost" in result.stderr


def test_aliases_give_the_same_values(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("attach", f"p:{prog}:add a=arg0:s32 b=arg1:s32",
                          f"r:{prog}:add ret=retval:s32", "--", prog, "3", check_status=0)
    values = [line.split(": ", 1)[1] for line in event_lines(result.stdout)]
    assert values == ["a=1 b=2", "ret=3", "a=2 b=2", "ret=4", "a=3 b=2", "ret=5"]


def test_kernel_spelling_and_percent_return(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("attach", f"p:first {prog}:add a=$arg1:s32",
                          f"{prog}:add%return ret=$retval:s32", "--", prog, check_status=0)
    lines = event_lines(result.stdout)
    assert lines[0].endswith(" first: a=1") and lines[1].endswith(" add__return: ret=3")


def test_json_output(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("attach", "--json", ENTRY.format(prog=prog),
                          RETURN.format(prog=prog) + " x=%di:x64", "--", prog, check_status=0)
    objects = [json.loads(line) for line in event_lines(result.stdout)]
    entry, ret, summary = objects
    assert entry["event"] == "add" and entry["args"] == {"a": 1, "b": 2}
    assert ret["event"] == "add__return" and ret["args"] == {"ret": 3, "x": "0x1"}
    for obj in (entry, ret):
        assert set(obj) == {"ts_ns", "pid", "tid", "cpu", "comm", "event", "args"}
        assert obj["comm"] == "main" and obj["pid"] == obj["tid"]
        assert abs(obj["ts_ns"] / 1e9 - time.time()) < 60
    assert entry["ts_ns"] <= ret["ts_ns"]
    assert summary == {"summary": {
        "events": 2, "lost": 0, "hits": 2, "filtered": 0, "command_status": 0,
        "probes": {"add": {"hits": 1, "lost": 0, "filtered": 0},
                   "add__return": {"hits": 1, "lost": 0, "filtered": 0}},
    }}


def test_output_file_is_private(add_program: Path, tmp_path: Path) -> None:
    prog = str(add_program)
    out = tmp_path / "events.txt"
    run_rawprobe("attach", "-o", str(out), ENTRY.format(prog=prog), "--", prog, check_status=0)
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().strip().endswith("add: a=1 b=2")


def test_pid_of_a_running_process(add_program: Path) -> None:
    prog = str(add_program)
    # The target sleeps 1.5 s before its three calls; rawprobe attaches meanwhile.
    target = subprocess.Popen([prog, "3", "1500"])
    other = None
    try:
        tracer = Background("attach", "-p", str(target.pid), ENTRY.format(prog=prog))
        tracer.ready()
        # A second process running the same code must not show up.
        other = subprocess.run([prog, "5"], check=False)
        target.wait(timeout=10)
        status, out, err = tracer.finish()
    finally:
        target.kill()
    assert status == 0, err
    lines = event_lines(out)
    assert [line.split(": ", 1)[1] for line in lines] == ["a=1 b=2", "a=2 b=2", "a=3 b=2"]
    assert all(f" {target.pid}/{target.pid} " in line for line in lines)
    assert other is not None and other.returncode == 0


def private_copy(program: Path, directory: Path) -> str:
    """A copy of ``program`` that no other test run executes, for host-wide probes."""
    copy = directory / program.name
    shutil.copy(program, copy)
    return str(copy)


def test_system_wide_sees_processes_started_later(add_program: Path, tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    tracer = Background("attach", ENTRY.format(prog=prog), "--duration", "20")
    tracer.ready()
    first = subprocess.Popen([prog, "1"])
    second = subprocess.Popen([prog, "2"])
    first.wait(timeout=10)
    second.wait(timeout=10)
    time.sleep(0.2)
    status, out, err = tracer.finish(signal.SIGINT)
    assert status == 0, err
    pids = sorted(int(line.split()[2].split("/")[0]) for line in event_lines(out))
    assert pids == sorted([first.pid, second.pid, second.pid])
    assert "3 events, 0 lost" in err


def test_command_children_are_followed(add_program: Path) -> None:
    prog = str(add_program)
    script = f"{prog} 1; {prog} 2; ( {prog} 1 ) & wait"
    result = run_rawprobe("attach", ENTRY.format(prog=prog), "--", "sh", "-c", script,
                          check_status=0)
    lines = event_lines(result.stdout)
    assert len(lines) == 4, result.stdout
    assert len({line.split()[2] for line in lines}) == 3  # three processes


def test_command_does_not_see_other_processes(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("attach", ENTRY.format(prog=prog), "--", "sh", "-c",
                          "sleep 0.5; true", check_status=0, timeout=30)
    assert event_lines(result.stdout) == []
    assert "0 events, 0 lost" in result.stderr


def test_duration_and_max_events(add_program: Path, tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    started = time.monotonic()
    result = run_rawprobe("attach", ENTRY.format(prog=prog), "--duration", "0.5",
                          check_status=0)
    assert time.monotonic() - started < 10
    assert "0 events" in result.stderr
    result = run_rawprobe("attach", "-n", "2", ENTRY.format(prog=prog), "--", prog, "5",
                          check_status=0)
    assert len(event_lines(result.stdout)) == 2


def test_sigterm_detaches_everything(add_program: Path, tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    tracer = Background("attach", ENTRY.format(prog=prog), RETURN.format(prog=prog))
    tracer.ready()
    links = bpf_link_ids_of(tracer.proc.pid)
    assert len(links) == 2  # our two uprobes
    assert links <= existing_bpf_link_ids()  # as the kernel lists them
    subprocess.run([prog], check=True)
    time.sleep(0.2)
    status, out, err = tracer.finish(signal.SIGTERM)
    assert status == 0, err
    assert len(event_lines(out)) == 2
    assert "2 events, 0 lost" in err
    assert not links & existing_bpf_link_ids()


STRINGS_SOURCE = r"""
__attribute__((noinline)) void take(const char *s) { asm volatile("" :: "r"(s) : "memory"); }
int main(void) { take("1234567"); take("12345678"); take(""); take((const char *)8); return 0; }
"""


def test_string_size_cuts_and_says_so() -> None:
    from helpers import build_c

    program = build_c(STRINGS_SOURCE, name="strings", flags=("-O1",))
    result = run_rawprobe("attach", "--json", "--string-size", "8",
                          f"p:{program}:take s=$arg1:string", "--", str(program), check_status=0)
    objects = [json.loads(line) for line in event_lines(result.stdout)]
    assert [o["args"]["s"] for o in objects[:-1]] == ["1234567", "1234567", "", None]
    assert [o.get("truncated") for o in objects[:-1]] == [None, ["s"], None, None]
    assert objects[2].get("faults") is None and objects[3]["faults"] == ["s"]
    assert objects[-1]["summary"]["truncated"] == 1
    assert "1 event had strings cut at --string-size" in result.stderr
    text = run_rawprobe("attach", "--string-size", "8", f"p:{program}:take s=$arg1:string",
                        "--", str(program), check_status=0).stdout
    assert [line.split(": ", 1)[1] for line in event_lines(text)] == [
        's="1234567"', 's="1234567"...', 's=""', "s=(fault)"]


def test_string_size_limit_is_a_usage_error(add_program: Path) -> None:
    result = run_rawprobe("attach", "--string-size", "5000", f"p:{add_program}:add")
    assert result.returncode == 2 and "1..4096" in result.stderr
