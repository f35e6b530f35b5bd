"""``--interval`` on a terminal: the table is redrawn in place with its top rows; piped, every
table is printed whole."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import termios

from helpers import build_c, rawprobe_argv, run_rawprobe

PROGRAM = r"""
__attribute__((noinline)) int f(int x) { asm volatile("" ::: "memory"); return x; }
int main(void) {
    int sum = 0;
    for (int i = 0; i < 40; i++)
        for (int j = 0; j <= i; j++) sum += f(i);
    return sum == 0;
}
"""
# f(i) is called i + 1 times: 40 keys, the highest count 40 (key 39).


def on_terminal(argv: list[str], rows: int = 12) -> str:
    """What a terminal of ``rows`` lines would receive from ``argv`` on its stdout."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 100, 0, 0))
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE,
                            env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as error:  # EIO: the other side is closed
            assert error.errno == errno.EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


def test_intervals_redraw_in_place_with_the_top_rows_on_a_terminal() -> None:
    program = build_c(PROGRAM, name="keys", flags=("-O1",))
    argv = ["attach", "--count", "--by", "x", "--interval", "0.2", f"p:{program}:f x=%di:s32",
            "--", str(program)]
    screen = on_terminal(rawprobe_argv(*argv))
    assert "\x1b[H\x1b[2J" in screen
    tables = [t for t in screen.split("\x1b[H\x1b[2J") if "EVENT" in t]
    full = [t for t in tables if "more, " in t]
    assert full, screen
    for table in full:
        rows = [line.split() for line in table.splitlines() if line.startswith("f ")]
        assert len(rows) == 12 - 4  # the screen less the stamp, the header and the last line
        counts = [int(row[2]) for row in rows]
        assert counts == sorted(counts, reverse=True)  # the highest counts of the interval

    piped = run_rawprobe(*argv, check_status=0).stdout
    assert "\x1b" not in piped
    # Every key of every interval, whole: each of the 40 keys is in some table.
    assert "more, " not in piped
    assert {line.split()[1] for line in piped.splitlines()
            if line.startswith("f ")} == {str(i) for i in range(40)}

