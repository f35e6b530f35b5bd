"""USDT probes end to end: real probes in compiled programs, libstdc++ and python3.11."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers import Background, run_rawprobe, skip_or_fail
from test_usdt_programs import (
    FIXTURE_BUILDS,
    FIXTURE_PROBES,
    expected_values,
    fixture_program,
    library_user,
    semaphore_program,
    thrower_program,
    usdt_library,
)

PYTHON = Path("/usr/bin/python3.11")
LIBSTDCXX = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
ROUNDS = 3


def json_events(stdout: str) -> tuple[list[dict[str, object]], dict[str, object]]:
    """The events of an ``attach --json`` run, and its summary line."""
    objects = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert objects and "summary" in objects[-1], stdout
    return objects[:-1], objects[-1]["summary"]


def values(event: dict[str, object]) -> list[object]:
    args = event["args"]
    assert isinstance(args, dict)
    return list(args.values())


def assert_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("rawprobe: error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    # Refused before anything was planted. (Counting BPF links would also count those of
    # other rawprobe runs on the host.)
    assert "rawprobe: tracing" not in result.stderr


# -- arguments of every size, sign and operand -------------------------------------------------


@pytest.mark.parametrize("build", sorted(FIXTURE_BUILDS))
def test_argument_values(build: str) -> None:
    program = str(fixture_program(build))
    words = [
        f"usdt:{program}:fixture:{name}"
        for name in ("zero", "one", "bytes", "ints", "six", "constants", "symbols", "indexed",
                     "twice")
    ] + [
        f"usdt:{program}:fixture:wide a=$arg1 b=$arg2 w=$arg3:string",
        f"usdt:{program}:globals a=$arg1 b=$arg2 name=$arg3:string",
    ]
    result = run_rawprobe("attach", "--json", *words, "--", program, str(ROUNDS),
                          check_status=0)
    events, summary = json_events(result.stdout)
    expected: list[tuple[str, list[object]]] = []
    for round_number in range(1, ROUNDS + 1):
        wanted = expected_values(round_number)
        twice = iter(wanted["twice"])
        for name in FIXTURE_PROBES:
            expected.append((name, next(twice) if name == "twice" else wanted[name]))  # type: ignore[arg-type]
    got = []
    for event in events:
        name, args = str(event["event"]), values(event)
        if name == "indexed" and len(args) == 1:
            # -O2 puts table[round & 3] at an index form: left out, not guessed.
            args = [None, *args]
        got.append((name, args))
    for position, (name, wanted_args) in enumerate(expected):
        if name == "indexed" and got[position][1][0] is None:
            wanted_args = [None, wanted_args[1]]
        assert got[position] == (name, wanted_args), (position, got[position])
    assert len(got) == len(expected)
    assert summary["events"] == len(expected) and summary["lost"] == 0


def test_text_output_names_and_formats_the_arguments() -> None:
    program = str(fixture_program("O2"))
    result = run_rawprobe("attach", f"usdt:{program}:ints",
                          f"usdt:{program}:wide w=$arg3:string big=$arg2:x64",
                          "--", program, "1", "0", "text-word", check_status=0)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].endswith(" ints: arg1=-1000 arg2=60001 arg3=-100000 arg4=4000000001")
    assert lines[1].endswith(' wide: w="text-word" big=0x8000000000000001')
    assert "rawprobe: 2 events, 0 lost" in result.stderr


def test_a_probe_without_arguments_by_default_and_with_a_name() -> None:
    program = str(fixture_program("O0"))
    result = run_rawprobe("attach", "--json", f"usdt:start {program}:fixture:zero",
                          "--", program, "2", check_status=0)
    events, _summary = json_events(result.stdout)
    assert [(event["event"], event["args"]) for event in events] == [("start", {})] * 2


# -- bad input ---------------------------------------------------------------------------------


def test_an_untranslatable_argument_is_refused_by_name() -> None:
    program = str(fixture_program("O2"))
    result = run_rawprobe("attach", f"usdt:{program}:indexed v=$arg1", "--", program)
    assert_usage_error(result, "$arg1: cannot translate the USDT argument spec '-2@(",
                       "index register", "does not guess", "^")


def test_an_argument_beyond_the_count() -> None:
    program = str(fixture_program("O2"))
    result = run_rawprobe("attach", f"usdt:{program}:bytes v=$arg3", "--", program)
    assert_usage_error(result, "$arg3: this USDT probe has 2 arguments")


def test_unknown_probe_and_file_without_notes() -> None:
    program = str(fixture_program("O2"))
    result = run_rawprobe("attach", f"usdt:{program}:fixture:nope", "--", program)
    assert_usage_error(result, "no USDT probe 'fixture:nope'", "fixture:bytes")
    result = run_rawprobe("attach", f"usdt:{program}:shared", "--", program)
    assert_usage_error(result, "fixture:shared, other:shared", "write PROVIDER:NAME")
    result = run_rawprobe("attach", "usdt:/bin/true:x", "--", "true")
    assert_usage_error(result, "has no USDT probes", "rawprobe list /")


# -- semaphores --------------------------------------------------------------------------------


def guarded_count(output: str) -> int:
    match = re.search(r"^guarded=(\d+)$", output, re.MULTILINE)
    assert match, output
    return int(match.group(1))


def test_semaphore_is_raised_only_while_traced() -> None:
    program = str(semaphore_program())
    untraced = subprocess.run([program, "3"], capture_output=True, text=True, check=True)
    assert guarded_count(untraced.stdout) == 0
    result = run_rawprobe("attach", "--json", f"usdt:{program}:guarded:tick", "--",
                          program, "3", check_status=0)
    assert guarded_count(result.stdout) == 3  # the command writes to our stdout
    events, _summary = json_events(result.stdout)
    assert [values(event) for event in events] == [[1, 1], [2, 2], [3, 3]]


def test_semaphore_of_a_running_process_rises_and_falls_with_the_probe() -> None:
    program = str(semaphore_program())
    rounds = 60
    target = subprocess.Popen([program, str(rounds), "50"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        tracer = Background("attach", "--json", "-p", str(target.pid), "--duration", "1",
                            f"usdt:{program}:guarded:tick")
        tracer.ready()
        status, out, err = tracer.finish(timeout=30)
        output, _ = target.communicate(timeout=30)
    finally:
        target.kill()
    assert status == 0, err
    events, _summary = json_events(out)
    counts = [values(event)[1] for event in events]
    guarded = guarded_count(output)
    # Raised at attach, lowered at detach by the kernel: some rounds ran guarded, not all.
    assert 0 < guarded < rounds, guarded
    assert counts and counts == list(range(counts[0], counts[0] + len(counts)))
    # Rounds may still run guarded after the last event: removing a uprobe waits out an RCU
    # grace period (~0.1 s here, two 50 ms rounds) before the kernel lowers the semaphore.
    assert 0 <= guarded - counts[-1] <= 3


# -- a probe at several sites, in a shared library ---------------------------------------------


def test_shared_library_by_path() -> None:
    library, user = str(usdt_library()), str(library_user())
    result = run_rawprobe("attach", "--json",
                          f"usdt:{library}:usdtlib:mark v=$arg1 label=$arg2:string g=$arg3",
                          "--", user, "3", check_status=0)
    events, _summary = json_events(result.stdout)
    assert [values(event) for event in events] == [
        [7, "lib-label", 1], [14, "lib-label", 2], [21, "lib-label", 3]]
    assert guarded_count(result.stdout) == 3  # the library's semaphore was raised too


def test_shared_library_by_name_in_a_running_process() -> None:
    user = str(library_user())
    target = subprocess.Popen([user, "3", "1500"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)  # the dynamic linker has mapped the library by then
        tracer = Background("attach", "-p", str(target.pid),
                            "usdt:libusdtfix:usdtlib:mark v=$arg1 label=$arg2:string")
        tracer.ready()
        output, _ = target.communicate(timeout=30)
        status, out, err = tracer.finish(timeout=30)
    finally:
        target.kill()
    assert status == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert [line.split(": ", 1)[1] for line in lines] == [
        f'v={7 * i} label="lib-label"' for i in (1, 2, 3)]
    assert all(f" {target.pid}/{target.pid} mark:" in line for line in lines)
    assert guarded_count(output) == 3


# -- real programs: libstdc++ and python3.11 ---------------------------------------------------


def test_libstdcxx_throw() -> None:
    if not LIBSTDCXX.exists():
        skip_or_fail(f"{LIBSTDCXX} is not installed")
    thrower = str(thrower_program())
    # libstdcxx:throw(void *object, std::type_info *type); type_info's name is its second word.
    result = run_rawprobe("attach", "--json",
                          f"usdt:{LIBSTDCXX}:libstdcxx:throw object=$arg1:x64 "
                          "type=+0(+8($arg2)):string", "--", thrower, "3", check_status=0)
    events, summary = json_events(result.stdout)
    assert "caught=3" in result.stdout
    assert len(events) == 3 and summary["lost"] == 0
    for event in events:
        args = event["args"]
        assert isinstance(args, dict)
        assert args["type"] == "St13runtime_error"
        assert int(str(args["object"]), 16) != 0


def python_or_skip() -> str:
    if not PYTHON.exists():
        skip_or_fail(f"{PYTHON} is not installed")
    return str(PYTHON)


def test_python_import_markers() -> None:
    python = python_or_skip()
    result = run_rawprobe("attach", "--json",
                          f"usdt:{python}:python:import__find__load__done name=$arg1:string "
                          "found=$arg2:s32", "--", python, "-I", "-S", "-c", "import json",
                          check_status=0)
    events, _summary = json_events(result.stdout)
    loaded = {str(values(event)[0]): values(event)[1] for event in events}
    assert loaded.get("json") == 1 and loaded.get("json.decoder") == 1, loaded


def test_python_function_entry(tmp_path: Path) -> None:
    python = python_or_skip()
    # Debian's CPython 3.11 fires function__entry when it enters a frame for a generator or
    # coroutine being thrown into (closing one counts); its plain calls are inlined in the
    # interpreter loop and fire nothing. A coroutine that is created and closed is one event.
    script = tmp_path / "marker.py"
    script.write_text("async def marker_coroutine():\n    pass\n\n"
                      "coroutine = marker_coroutine()\ncoroutine.close()\n")
    result = run_rawprobe(
        "attach", "--json",
        f"usdt:{python}:python:function__entry file=$arg1:string fn=$arg2:string "
        "line=$arg3:s32", "--", python, "-I", "-S", str(script), check_status=0)
    events, _summary = json_events(result.stdout)
    ours = [event["args"] for event in events
            if isinstance(event["args"], dict) and event["args"].get("file") == str(script)]
    assert ours == [{"file": str(script), "fn": "marker_coroutine", "line": 1}], events
