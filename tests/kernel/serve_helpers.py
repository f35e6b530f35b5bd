"""``rawprobe serve`` in the background, and a real Prometheus server scraping it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from helpers import rawprobe_argv, require_tool

# A program whose handle(size) the tests count and bucket: ``srv TIMES SIZE [TIMES SIZE ...]``
# calls it at once and exits; ``srv wait TIMES SIZE`` calls it on SIGUSR1 and stays.
# Built twice, with VERSION 1 and 2: the second has handle at another offset, as an upgrade
# would.
SERVER_SOURCE = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if VERSION > 1
__attribute__((noinline)) long pad(long x) { return x * 3 + 1; }
#endif
__attribute__((noinline)) long handle(long size) { asm volatile("" ::: "memory"); return size * 2; }
static volatile sig_atomic_t go;
static void start(int sig) { (void)sig; go = 1; }
int main(int argc, char **argv) {
    long sum = 0;
    int wait = argc > 1 && strcmp(argv[1], "wait") == 0;
    if (wait) {  /* srv wait TIMES SIZE: call on SIGUSR1, then stay until killed */
        signal(SIGUSR1, start);
        puts("ready");
        fflush(stdout);
        while (!go) pause();
    }
    for (int i = 1 + wait; i + 1 < argc; i += 2)
        for (int j = 0; j < atoi(argv[i]); j++)
            sum += handle(atol(argv[i + 1]));
#if VERSION > 1
    sum += pad(sum);
#endif
    if (wait) {
        printf("done %ld\n", sum);
        fflush(stdout);
        for (;;) pause();
    }
    return sum == 42;
}
"""


class Serve:
    """``rawprobe serve ARGS`` on an ephemeral loopback port; its stderr is read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(rawprobe_argv("serve", "--listen", "127.0.0.1:0", *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_for("serving ")
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        self.port = int(match.group(1))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The first stderr line containing ``text`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if "" in self.lines or time.monotonic() > deadline:
                    raise AssertionError(f"rawprobe serve never said {text!r}:\n"
                                         + "".join(self.lines))
                self._changed.wait(0.2)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return status, "".join(self.lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """Debian's prometheus on loopback, scraping ``target`` every 0.5 s, with its own
    configuration and data under ``directory``."""

    def __init__(self, directory: Path, target: str) -> None:
        binary = require_tool("prometheus")
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
            "scrape_configs:\n  - job_name: rawprobe\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = open(directory / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=directory)
        self._wait_ready(directory)

    def _wait_ready(self, directory: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n"
                                     + (directory / "prometheus.log").read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus was not ready in time")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query through the HTTP API."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=10) as reply:
            answer = json.loads(reply.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None while it has none."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, wanted: float, timeout: float = 30) -> float | None:
        """Query until the value is ``wanted`` (scrapes come every 0.5 s); the last value."""
        deadline = time.monotonic() + timeout
        value = self.value(promql)
        while value != wanted and time.monotonic() < deadline:
            time.sleep(0.25)
            value = self.value(promql)
        return value

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
