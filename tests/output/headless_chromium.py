"""A headless Chromium driven through the DevTools protocol, with the stdlib only.

``--remote-debugging-pipe`` makes Chromium read protocol messages from file descriptor 3 and
write its answers to descriptor 4, each a JSON object ended by a NUL byte: no WebSocket client
and no port are needed. Mouse events go through the browser's own input path, so a click here
is a click a person makes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from typing import Any

from helpers import skip_or_fail

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--disable-dev-shm-usage", "--remote-debugging-pipe",
]


def find_chromium() -> str:
    """The browser's path; skips (or fails, when tracing hosts are required) without one."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    skip_or_fail("chromium is not installed (apt-get install chromium)")
    raise AssertionError("unreachable")


class ProtocolError(AssertionError):
    """The browser answered a command with an error, or did not answer in time."""


class Page:
    """One browser tab, attached to in the protocol's flat session mode."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def goto(self, url: str, width: int, height: int) -> None:
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.browser.events.clear()
        self.call("Page.navigate", url=url)
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a script expression in the page (JSON-able values only)."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise ProtocolError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def mouse(self, kind: str, x: float, y: float) -> int:
        """Send a mouse event without waiting for its answer (a prompt would hold it)."""
        params: dict[str, Any] = {"type": kind, "x": x, "y": y}
        if kind != "mouseMoved":
            params.update(button="left", clickCount=1)
        return self.browser.send("Input.dispatchMouseEvent", params, self.session)

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.browser.result(self.mouse(kind, x, y))

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def exceptions(self) -> list[dict[str, Any]]:
        """Uncaught script exceptions reported so far."""
        return [event for event in self.browser.events
                if event.get("method") == "Runtime.exceptionThrown"]


class Browser:
    """A running headless Chromium and the pipe to its protocol endpoint."""

    def __init__(self, binary: str, profile: str, log: Any) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def descriptors() -> None:
            # Chromium insists on 3 and 4; move both out of the way first so neither dup2
            # overwrites the other.
            high_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            preexec_fn=descriptors, pass_fds=(3, 4),
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def result(self, message_id: int, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while message_id not in self._answers:
            self._read(deadline)
        answer = self._answers.pop(message_id)
        if "error" in answer:
            raise ProtocolError(f"browser refused command {message_id}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        return self.result(self.send(method, params, session))

    def wait_event(self, method: str, session: str | None = None,
                   timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    self.events.remove(event)
                    params: dict[str, Any] = event.get("params", {})
                    return params
            seen = len(self.events)
            self._read(deadline)

    def _read(self, deadline: float) -> None:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise ProtocolError("the browser did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ProtocolError("the browser closed its protocol pipe (did it crash?)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "id" in message:
            self._answers[message["id"]] = message
        else:
            self.events.append(message)

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, session["sessionId"])

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless browser for the duration of the block (skipped when none is installed)."""
    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="rawprobe-chromium-") as profile, \
            open(os.path.join(profile, "browser.log"), "wb") as log:
        browser = Browser(binary, os.path.join(profile, "profile"), log)
        try:
            yield browser
        finally:
            browser.close()


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """``(width, height, rows)`` of an 8-bit RGB or RGBA PNG, each row as RGB bytes.

    Enough of PNG for a browser's screenshots (no interlacing, no palette).
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position = 8
    compressed = b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            compressed += body
    raw = zlib.decompress(compressed)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for index in range(height):
        start = index * (stride + 1)
        row_filter = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if row_filter == 1:
                line[i] = (line[i] + left) & 0xFF
            elif row_filter == 2:
                line[i] = (line[i] + up) & 0xFF
            elif row_filter == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif row_filter == 4:
                corner = previous[i - channels] if i >= channels else 0
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 0xFF
        previous = line
        rgb = bytearray(line)
        if channels == 4:
            del rgb[3::4]  # drop alpha: screenshots are opaque
        rows.append(bytes(rgb))
    return width, height, rows
