"""The seed's bashreadline: lines typed into an interactive bash, read at readline's return."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import time

from helpers import Background, require_tool

WORD = "r:/bin/bash:readline line=+0($retval):string"


def read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_lines_typed_into_an_interactive_bash() -> None:
    require_tool("bash")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: an interactive bash with no rc files and a known prompt
        os.environ.update(PS1="ready> ", TERM="dumb", HISTFILE="/dev/null")
        os.execv("/bin/bash", ["bash", "--norc", "--noprofile", "-i"])
    tracer = None
    try:
        read_until(terminal, b"ready> ")
        tracer = Background("attach", "--json", "-p", str(pid), WORD)
        tracer.ready()
        # bash was already inside readline() when the probe was planted: a uretprobe catches
        # only calls that start after it is in place, so that first line is not seen.
        os.write(terminal, b"echo before\r")
        read_until(terminal, b"ready> ")
        typed = ["echo one", "true && echo 'two words'", "   spaced   ", ""]
        for line in typed:
            os.write(terminal, line.encode() + b"\r")
            read_until(terminal, b"ready> ")
        os.write(terminal, b"exit\r")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
        status, out, err = tracer.finish()  # ends by itself: the traced process exited
    finally:
        if tracer is not None and tracer.proc.poll() is None:
            tracer.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.close(terminal)
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    lines = [e["args"]["line"] for e in events if "event" in e]
    assert lines == [*typed, "exit"]
    assert all(e["pid"] == pid and e["comm"] == "bash" for e in events if "event" in e)
    assert events[-1]["summary"]["events"] == len(typed) + 1
