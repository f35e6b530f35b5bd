"""Regressions of issue 14: what a tracer running as root next to other people's programs must
never do (harm a program, lose data silently, write where it should not), and what it must say.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ADD_SOURCE, Background, build_c, run_rawprobe

import rawprobe
from rawprobe._probe.aggregations import AggregationSpec


def add_program() -> Path:
    return build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))


# -- 2. a file replaced between resolution and attach ------------------------------------------

OTHER_SOURCE = r"""
#include <stdio.h>
/* Another program at the same path: a movabs where the first one's add starts. */
__attribute__((noinline)) long long work(void) { return 0x1122334455667788LL; }
__attribute__((noinline)) int add(int a, int b) { return a - b; }
int main(void) { printf("%lld\n", work()); return 0; }
"""


def test_a_file_renamed_over_after_resolution_keeps_the_probe_in_the_file_resolved(
        tmp_path: Path) -> None:
    target = tmp_path / "target"
    shutil.copy(add_program(), target)
    resolved = tmp_path / "resolved"
    os.link(target, resolved)  # a second name for the inode rawprobe resolves
    other = tmp_path / "other"
    shutil.copy(build_c(OTHER_SOURCE, name="other", flags=("-O0",)), other)
    with rawprobe.Tracer(aggregation=AggregationSpec("count")) as tracer:
        tracer.add(f"p:{target}:add")
        os.rename(other, target)  # replaced between resolution and attach
        tracer.start()
        # The replacement runs unharmed and is not probed...
        replaced = subprocess.run([str(target)], capture_output=True, text=True, check=True)
        assert replaced.stdout.strip() == str(0x1122334455667788)
        # ... and the file that was resolved is.
        subprocess.run([str(resolved), "4"], check=False)
        time.sleep(0.2)
        assert tracer.aggregates().as_dict() == {("add", None): 4}


def test_a_file_changed_while_resolving_is_refused(tmp_path: Path) -> None:
    from rawprobe._host.files import TargetFile
    from rawprobe._symbols import TargetChangedError, resolve_location

    target = tmp_path / "target"
    shutil.copy(add_program(), target)
    opened = TargetFile(str(target))
    try:
        shutil.copy(build_c(OTHER_SOURCE, name="other", flags=("-O0",)), tmp_path / "new")
        os.rename(tmp_path / "new", target)
        with pytest.raises(TargetChangedError, match="changed while rawprobe was reading it"):
            resolve_location(str(target), "add", expect_key=opened.key)
    finally:
        opened.close()


# -- 3. instructions the kernel refuses ----------------------------------------------------------

ATOMIC_SOURCE = r"""
#include <stdio.h>
int counter;
volatile int sink;
/* Starts with a lock-prefixed instruction: the kernel refuses a uprobe there. */
__attribute__((naked, noinline)) void bump(void) {
    __asm__("lock incl counter(%rip)\n\tret");
}
__attribute__((noinline)) int plain(int x) { sink = x; return x + 1; }
int main(void) { for (int i = 0; i < 3; i++) { bump(); plain(i); } printf("%d\n", counter);
                 return 0; }
"""


def test_a_lock_prefixed_first_instruction_is_refused_up_front() -> None:
    program = build_c(ATOMIC_SOURCE, name="atomic", flags=("-O1", "-no-pie", "-fno-pie"))
    result = run_rawprobe("attach", f"p:{program}:bump", "--", str(program))
    assert result.returncode == 2, result.stderr
    assert "LOCK prefix" in result.stderr and "the kernel refuses" in result.stderr
    # --force cannot make the kernel accept it either.
    forced = run_rawprobe("attach", "--force", f"p:{program}:bump", "--", str(program))
    assert forced.returncode == 2 and "LOCK prefix" in forced.stderr
    # In a glob it is left out with a warning; the others are probed.
    result = run_rawprobe("attach", "--count", f"p:{program}:[bp]*", "--", str(program),
                          check_status=0)
    assert "left out (bump)" in result.stderr and "LOCK prefix" in result.stderr
    assert re.search(r"^plain\s+3$", result.stdout, re.M), result.stdout
    assert result.stdout.splitlines()[0] == "3"  # the program's own output, unharmed


# -- 4. the traced command's environment ---------------------------------------------------------


def test_the_command_runs_in_the_environment_it_was_given() -> None:
    program = add_program()
    script = ("grep -E '^Sig(Ign|Blk):' /proc/self/status; ulimit -n; "
              "yes | head -1 >/dev/null; echo pipe=$?")
    result = subprocess.run(
        ["sh", "-c", f"ulimit -n 512; exec {sys.executable} -m rawprobe attach "
                     f"'p:{program}:add' -- sh -c \"{script}\""],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    ignored = int(lines["SigIgn"], 16)
    assert not ignored >> (signal.SIGPIPE - 1) & 1, "SIGPIPE left ignored"
    assert not ignored >> (signal.SIGXFSZ - 1) & 1, "SIGXFSZ left ignored"
    assert int(lines["SigBlk"], 16) == 0
    assert "512" in result.stdout.split(), "RLIMIT_NOFILE not given back"
    assert "pipe=0" in result.stdout


def test_the_command_ends_when_rawprobe_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    tracer = Background("attach", f"p:{add_program()}:add", "--", "sh", "-c",
                        f"echo $$ > {marker}; exec sleep 60")
    tracer.ready()
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    command = int(marker.read_text())
    tracer.proc.send_signal(signal.SIGKILL)
    tracer.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{command}").exists() and "Z" not in _state(command):
        assert time.monotonic() < deadline, "the command outlived rawprobe, untraced"
        time.sleep(0.05)
    # The command's own uprobes are tracefs definitions, which SIGKILL leaves behind (the BPF
    # links went with the process): 'probes --clean' finds them orphaned and removes them.
    group_prefix = f"rawprobe_{os.stat('/proc/self/ns/pid').st_ino}_{tracer.proc.pid}_"
    left = run_rawprobe("probes", "--clean", check_status=0).stdout
    assert f"removed {group_prefix}" in left, left


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


# -- 5. a reference counter that is no semaphore -------------------------------------------------


def test_a_ref_ctr_offset_must_be_a_usdt_semaphore() -> None:
    program = add_program()
    result = run_rawprobe("attach", f"p:{program}:add(0x3020)", "--", str(program))
    assert result.returncode == 2, result.stderr
    assert "not the file offset of a USDT semaphore" in result.stderr


# -- 6. nothing after -- -------------------------------------------------------------------------


def test_nothing_after_the_double_dash_is_refused() -> None:
    result = run_rawprobe("attach", f"p:{add_program()}:add", "--", timeout=30)
    assert result.returncode == 2
    assert "no command" in result.stderr and "Traceback" not in result.stderr


# -- 7. -o never writes where it should not ------------------------------------------------------


def test_output_refuses_links_foreign_and_shared_files(tmp_path: Path) -> None:
    program = add_program()
    secret = tmp_path / "root-only"
    secret.write_text("precious\n")
    secret.chmod(0o600)
    link = tmp_path / "out-link"
    link.symlink_to(secret)
    result = run_rawprobe("attach", "-o", str(link), f"p:{program}:add", "--", str(program))
    assert result.returncode == 2 and "symbolic link" in result.stderr
    assert secret.read_text() == "precious\n"

    shared = tmp_path / "shared"
    shared.write_text("x")
    shared.chmod(0o666)
    result = run_rawprobe("attach", "-o", str(shared), f"p:{program}:add", "--", str(program))
    assert result.returncode == 2 and "other users may write" in result.stderr
    assert shared.read_text() == "x"

    nobody = pwd.getpwnam("nobody")
    foreign = tmp_path / "foreign"
    foreign.write_text("theirs")
    os.chown(foreign, nobody.pw_uid, nobody.pw_gid)
    foreign.chmod(0o600)
    result = run_rawprobe("attach", "-o", str(foreign), f"p:{program}:add", "--", str(program))
    assert result.returncode == 2 and "another user" in result.stderr
    assert foreign.read_text() == "theirs"

    result = run_rawprobe("attach", "-o", "/dev/full", f"p:{program}:add", "--", str(program))
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_output_is_truncated_only_once_the_probes_are_accepted(tmp_path: Path) -> None:
    program = add_program()
    out = tmp_path / "events"
    out.write_text("earlier run\n")
    out.chmod(0o644)
    result = run_rawprobe("attach", "-o", str(out), f"p:{program}:no_such_function", "--",
                          str(program))
    assert result.returncode == 2
    assert out.read_text() == "earlier run\n"
    run_rawprobe("attach", "-o", str(out), f"p:{program}:add a=%di:s32", "--", str(program),
                 check_status=0)
    assert out.read_text().rstrip().endswith("add: a=1")
    assert out.stat().st_mode & 0o777 == 0o600


# -- 11. stacks of processes that have exited ----------------------------------------------------


def test_stacks_of_an_exited_command_are_symbolized_and_folded_by_function() -> None:
    program = build_c(ADD_SOURCE, name="main", flags=("-O0", "-g", "-fno-omit-frame-pointer"))
    streamed = run_rawprobe("attach", "--stack", f"p:{program}:add", "--", str(program), "2",
                            check_status=0)
    assert "0x" not in streamed.stdout.replace("+0x", ""), streamed.stdout
    assert "main+0x" in streamed.stdout
    folded = run_rawprobe("attach", "--count", "--stack", "--folded", f"p:{program}:add",
                          "--", str(program), "3", check_status=0)
    lines = [line for line in folded.stdout.splitlines() if line.startswith("add;")]
    assert len(lines) == 1, folded.stdout
    frames, count = lines[0].rsplit(" ", 1)
    assert count == "3" and "+0x" not in frames and frames.endswith(";main;add")


# -- 12. names of probes inside a function -------------------------------------------------------


def test_offset_probes_have_names_of_their_own() -> None:
    program = add_program()
    starts = _instruction_offsets(program, "add")
    inside = starts[1]
    add = rawprobe.resolve_location(str(program), "add")[0]
    result = run_rawprobe("attach", "--json", f"p:{program}:add+{inside}",
                          f"p:{program}:{add.file_offset + starts[2]:#x}", "--", str(program),
                          check_status=0)
    events = [json.loads(line)["event"] for line in result.stdout.splitlines()
              if line.startswith('{"ts_ns"')]
    assert sorted(events) == sorted([f"add_{inside}",
                                     f"p_main_{add.file_offset + starts[2]:#x}"])


def _instruction_offsets(program: Path, function: str) -> list[int]:
    from rawprobe._plan.insn import instruction_starts

    location = rawprobe.resolve_location(str(program), function)[0]
    code = program.read_bytes()[location.file_offset:location.file_offset + location.size]
    return instruction_starts(code, 0, len(code))


def test_resolve_gives_attachs_verdict() -> None:
    program = add_program()
    starts = _instruction_offsets(program, "add")
    middle = next(offset + 1 for offset in starts if offset + 1 not in starts)
    result = run_rawprobe("resolve", f"{program}:add+{middle}")
    assert result.returncode == 2
    assert "middle of an instruction" in result.stdout + result.stderr


# -- 13. -n accounts for what came after it ------------------------------------------------------


def test_the_summary_adds_up_with_a_limit() -> None:
    program = add_program()
    result = run_rawprobe("attach", "--json", "-n", "3", f"p:{program}:add", "--",
                          str(program), "50", check_status=0)
    summary = json.loads(result.stdout.splitlines()[-1])["summary"]
    assert summary["events"] == 3
    assert summary["hits"] == 50
    assert summary["events"] + summary["lost"] + summary["filtered"] + summary.get(
        "after_limit", 0) == summary["hits"]
    assert "after the -n 3 limit" in result.stderr


# -- 17. small ones --------------------------------------------------------------------------------


def test_a_signalled_command_and_a_command_that_never_runs_the_code() -> None:
    program = add_program()
    result = run_rawprobe("attach", f"p:{program}:add", "--", "sh", "-c", "kill -TERM $$",
                          check_status=0)
    assert "was killed by SIGTERM" in result.stderr
    assert "no probe fired" in result.stderr


def test_count_table_header_lines_up() -> None:
    program = add_program()
    result = run_rawprobe("attach", "--count", "--by", "pid", f"p:{program}:add", "--",
                          str(program), "2", check_status=0)
    table = [line for line in result.stdout.splitlines() if line.split()[:1] in (["EVENT"],
                                                                                  ["add"])]
    header, row = table[0], table[1]
    # Each column's values start where its heading does.
    key_value = re.search(r"\s(\d+)\s", row)
    assert key_value is not None and key_value.start(1) == header.index("KEY")
    assert header.index("COUNT") == row.rindex(" ") + 1


# -- 1. the tracefs backend follows a forking command exactly ------------------------------------

FORKING_SOURCE = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
volatile long sink;
__attribute__((noinline)) void work(int i) { sink += i; }
int main(int argc, char **argv) {
    int calls = atoi(argv[1]), children = atoi(argv[2]);
    for (int c = 0; c < children; c++)
        if (fork() == 0) { for (int i = 0; i < calls; i++) work(i); _exit(0); }
    for (int i = 0; i < calls; i++) work(i);
    while (wait(NULL) > 0) {}
    return 0;
}
"""


@pytest.mark.parametrize("backend", ["tracefs", "bpf"])
def test_a_forking_command_is_followed_exactly(backend: str) -> None:
    program = build_c(FORKING_SOURCE, name="forking", flags=("-O1",))
    # A bystander runs the same code meanwhile: none of its calls may be counted.
    bystander = subprocess.Popen([str(program), "200000", "0"])
    try:
        for _ in range(3):
            result = run_rawprobe("attach", "--backend", backend, "--json",
                                  f"p:{program}:work", "--", str(program), "2000", "4",
                                  check_status=0, timeout=120)
            summary = json.loads(result.stdout.splitlines()[-1])["summary"]
            events = sum(1 for line in result.stdout.splitlines()
                         if line.startswith('{"ts_ns"'))
            assert (events, summary["events"], summary["hits"], summary["lost"]) == (
                10000, 10000, 10000, 0), summary
    finally:
        bystander.kill()
        bystander.wait()


def test_help_shows_fetch_args_as_they_are_written() -> None:
    # argparse leaves an epilog's text as written: "%%di" would print as "%%di".
    for command in ("attach", "record", "serve", "syscalls", "list", "report"):
        result = run_rawprobe(command, "--help", check_status=0)
        assert "%%" not in result.stdout, (command, result.stdout)
    assert "a=%di:s32" in run_rawprobe("attach", "--help", check_status=0).stdout
