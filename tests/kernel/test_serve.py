"""``rawprobe serve``: real probes, scraped directly and by a real Prometheus server.

The program is a private copy in a temporary directory, so no other process runs its code:
host-wide probes on it count exactly the calls the test makes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import bpf_link_ids_of, build_c, existing_bpf_link_ids
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import SERVER_SOURCE, Prometheus, Serve


def program(version: int) -> Path:
    return build_c(SERVER_SOURCE, name="srv", flags=("-O1", f"-DVERSION={version}"))


def install(version: int, path: Path) -> None:
    """Put version ``version`` at ``path`` as a package manager does: a new file renamed
    over the old (a new inode; processes running the old one keep it)."""
    staging = path.with_name(path.name + ".new")
    shutil.copy2(program(version), staging)
    os.rename(staging, path)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def wait_replanted(serve: Serve, metrics: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = samples(serve.scrape())
        if all(got.get(("rawprobe_replants_total", (("metric", metric),))) == 1
               for metric in metrics):
            return
        time.sleep(0.1)
    raise AssertionError("not re-planted:\n" + "".join(serve.lines))


@pytest.fixture
def srv(tmp_path: Path) -> Path:
    path = tmp_path / "srv"
    install(1, path)
    return path


def test_counts_histograms_and_health_are_read_at_scrape_time(srv: Path) -> None:
    serve = Serve("--count", "--by", "comm", f"p:{srv}:handle",
                  "--hist", "size", f"p:{srv}:handle size=%di:u64",
                  "--hist", "latency", f"p:{srv}:handle")
    try:
        subprocess.run([srv, "20", "100", "17", "3000"], check=True)
        got = samples(serve.scrape())
        latency = "rawprobe_handle_latency_seconds"
        assert got[(latency + "_count", (("event", "handle"),))] == 37
        bounds = [float(dict(labels)["le"]) for name, labels in got
                  if name == latency + "_bucket"]
        assert 0 < min(b for b in bounds if b > 0) < 1e-6 and max(bounds) == float("inf")
        assert got[("rawprobe_handle_calls_total", (("comm", "srv"), ("event", "handle")))] == 37
        assert got[("rawprobe_handle_size_bucket", (("event", "handle"), ("le", "127")))] == 20
        assert got[("rawprobe_handle_size_bucket", (("event", "handle"), ("le", "4095")))] == 37
        assert got[("rawprobe_handle_size_count", (("event", "handle"),))] == 37
        hits = ("rawprobe_probe_hits_total", (("event", "handle"), ("metric", "handle_calls")))
        assert got[hits] == 37
        assert got[("rawprobe_probes_planted", (("metric", "handle_size"),))] == 1
        planted = ("rawprobe_probes_planted", (("metric", "handle_latency_seconds"),))
        assert got[planted] == 2  # the entry and the return
        assert any(name == "rawprobe_build_info" for name, _ in got)
        links = bpf_link_ids_of(serve.proc.pid)
        assert links
    finally:
        status, log = serve.stop()
    assert status == 0, log
    assert "stopped; every probe removed" in log
    assert not links & existing_bpf_link_ids()  # nothing left planted


def test_a_bad_probe_is_a_usage_error_and_nothing_is_served(srv: Path) -> None:
    from helpers import run_rawprobe

    result = run_rawprobe("serve", "--listen", "127.0.0.1:0", "--count", f"p:{srv}:handle",
                          "--count", f"p:{srv}:no_such_function", check_status=2)
    assert "no_such_function" in result.stderr
    assert "Traceback" not in result.stderr


def test_prometheus_scrapes_the_exact_calls_and_the_buckets_across_an_upgrade(
        srv: Path, tmp_path: Path) -> None:
    """The done-when of the exporter: a real Prometheus server scrapes `rawprobe serve`; PromQL
    returns exactly the calls made, a quantile a bound consistent with the values passed;
    the exporter keeps serving when the program exits and is replaced on disk."""
    serve = Serve("--check-interval", "0.2",
                  "--count", f"p:{srv}:handle",
                  "--hist", "size", f"p:{srv}:handle size=%di:u64")
    prometheus = None
    try:
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{serve.port}")
        # 20 calls with 100 (log2 bucket [64, 128): le 127), 17 with 3000 ([2048, 4096)).
        subprocess.run([srv, "20", "100", "17", "3000"], check=True)
        calls = 'rawprobe_handle_calls_total{job="rawprobe"}'
        assert prometheus.wait_value(calls, 37) == 37
        size = 'rawprobe_handle_size_bucket{job="rawprobe"}'
        assert prometheus.wait_value(f"histogram_quantile(1, {size})", 4095) == 4095
        median = prometheus.value(f"histogram_quantile(0.25, {size})")
        assert median is not None and 64 <= median <= 127
        high = prometheus.value(f"histogram_quantile(0.9, {size})")
        assert high is not None and 2048 <= high <= 4095
        assert prometheus.value('rawprobe_handle_size_count{job="rawprobe"}') == 37

        # The program has exited; an upgrade puts a new build (handle moved) in its place.
        install(2, srv)
        wait_replanted(serve, ["handle_calls", "handle_size"])
        subprocess.run([srv, "5", "1"], check=True)
        # Counters carried over the re-plant: 37 before, 5 after; never reset.
        assert prometheus.wait_value(calls, 42) == 42
        assert prometheus.wait_value('rawprobe_replants_total{metric="handle_calls"}', 1) == 1
        assert prometheus.value(f"resets({calls}[1m])") == 0
        assert prometheus.value(f'{size[:-1]},le="1"}}') == 5
        assert prometheus.value('up{job="rawprobe"}') == 1
    finally:
        if prometheus is not None:
            prometheus.stop()
        status, log = serve.stop(signal.SIGTERM)
    assert status == 0, log
    assert "stopped; every probe removed" in log


def test_processes_running_the_replaced_file_are_still_counted(srv: Path) -> None:
    """After an upgrade, a process started before it runs the old file: its calls still
    count until it exits, and then the old probes go and the counter keeps its value."""
    old = subprocess.Popen([srv, "wait", "7", "1"], stdout=subprocess.PIPE, text=True)
    serve = None
    try:
        assert old.stdout is not None and old.stdout.readline() == "ready\n"
        serve = Serve("--check-interval", "0.2", "--count", f"p:{srv}:handle")
        install(2, srv)
        wait_replanted(serve, ["handle_calls"])
        calls = ("rawprobe_handle_calls_total", (("event", "handle"),))
        planted = ("rawprobe_probes_planted", (("metric", "handle_calls"),))
        assert samples(serve.scrape())[planted] == 2  # the old file's and the new one's
        old.send_signal(signal.SIGUSR1)
        assert old.stdout.readline().startswith("done")
        subprocess.run([srv, "5", "1"], check=True)
        assert samples(serve.scrape())[calls] == 12
        old.kill()
        old.wait()
        serve.wait_for("no process maps the replaced file")
        got = samples(serve.scrape())
        assert got[calls] == 12 and got[planted] == 1
    finally:
        old.kill()
        old.wait()
        if serve is not None:
            status, log = serve.stop()
            assert status == 0, log
