"""Metric definitions: the command line's groups, the TOML file, names and listen addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawprobe import UsageError
from rawprobe._probe.aggregations import HistSpec
from rawprobe._serve.config import MetricSpec, load_config, parse_listen
from rawprobe.cli._parser import build_parser


def serve_args(*argv: str) -> list[MetricSpec]:
    from rawprobe.cli._serve import _metrics

    return _metrics(build_parser().parse_args(["serve", *argv]))


def test_each_count_or_hist_starts_a_metric_with_the_words_after_it() -> None:
    metrics = serve_args("--listen", "127.0.0.1:9", "--count", "--by", "comm", "p:libc:malloc",
                         "--hist", "size", "p:libc:malloc size=%di:u64", "p:libc:calloc",
                         "--filter", "size > 4", "--hist", "latency", "p:./srv:handle",
                         "--name", "handling")
    assert metrics == [
        MetricSpec("count", ("p:libc:malloc",), by="comm"),
        MetricSpec("hist", ("p:libc:malloc size=%di:u64", "p:libc:calloc"),
                   hist=HistSpec("size"), filter="size > 4"),
        MetricSpec("hist", ("p:./srv:handle",), hist=HistSpec("latency"), name="handling"),
    ]


@pytest.mark.parametrize("argv", [
    ["--by", "comm", "p:libc:malloc"],                 # --by before any metric
    ["--count", "p:x:y", "--by", "comm", "--by", "pid"],  # twice for one metric
    ["--hist", "no such field!", "p:x:y"],             # a bad --hist
])
def test_misplaced_metric_options_are_usage_errors(argv: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_args(*argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_default_names_say_what_is_measured_and_the_unit() -> None:
    assert MetricSpec("count", ("p:libc:malloc",)).family_name(["malloc"]) == \
        "rawprobe_malloc_calls"
    assert MetricSpec("hist", ("w",), hist=HistSpec("size")).family_name(["malloc"]) == \
        "rawprobe_malloc_size"
    latency = MetricSpec("hist", ("w",), hist=HistSpec("latency"))
    assert latency.family_name(["handle"]) == "rawprobe_handle_latency_seconds"
    named = MetricSpec("count", ("w",), name="allocations_total")
    assert named.family_name(["a", "b"]) == "rawprobe_allocations"


def test_a_metric_of_several_events_must_be_named() -> None:
    with pytest.raises(UsageError, match="name it"):
        MetricSpec("count", ("p:libc:mem*",)).family_name(["memcpy", "memset"])


@pytest.mark.parametrize("by", ["event", "le", "__x", "a-b"])
def test_a_by_key_that_cannot_be_a_label_is_refused(by: str) -> None:
    with pytest.raises(UsageError, match="Prometheus label"):
        MetricSpec("count", ("p:x:y",), by=by)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9435") == ("127.0.0.1", 9435)
    assert parse_listen(":9435") == ("0.0.0.0", 9435)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("9435", "host:", "host:99999", "[::1]"):
        with pytest.raises(UsageError, match="HOST:PORT"):
            parse_listen(bad)


def test_the_configuration_file(tmp_path: Path) -> None:
    path = tmp_path / "exporter.toml"
    path.write_text('''
listen = ":9500"
check_interval = 0.5
max_label_values = 20

[[metric]]
count = true
by = "comm"
probes = ["p:libc:malloc"]

[[metric]]
name = "malloc_bytes"
hist = "size:linear:0:4096:256"
filter = "size > 0"
probes = ["p:libc:malloc size=%di:u64"]
''')
    config = load_config(str(path))
    assert (config.listen, config.check_interval, config.max_label_values) == (":9500", 0.5, 20)
    assert config.metrics == [
        MetricSpec("count", ("p:libc:malloc",), by="comm"),
        MetricSpec("hist", ("p:libc:malloc size=%di:u64",), hist=HistSpec("size", (0, 4096, 256)),
                   filter="size > 0", name="malloc_bytes"),
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("listen = 9435", "listen must be str"),
    ("lisen = ':1'", "unknown key 'lisen'"),
    ("[[metric]]\nprobes = ['p:x:y']", "either count = true or hist"),
    ("[[metric]]\ncount = true\nhist = 'x'\nprobes = ['p:x:y']", "either count = true or hist"),
    ("[[metric]]\ncount = true\nprobes = 'p:x:y'", "probes must be list"),
    ("[[metric]]\ncount = true\nprobe = ['p:x:y']", "unknown key 'probe'"),
    ("[[metric]]\ncount = true\nprobes = []", "has no probes"),
    ("check_interval = 0", "greater than 0"),
    ("this is not toml", "not valid TOML"),
])
def test_configuration_mistakes_are_usage_errors(tmp_path: Path, text: str,
                                                 message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_config(str(path))


def test_a_missing_configuration_file() -> None:
    with pytest.raises(UsageError, match="cannot read the configuration"):
        load_config("/nonexistent/rawprobe.toml")


def test_the_shipped_service_and_configuration_agree() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    config = load_config(str(root / "rawprobe-exporter.toml"))
    assert config.metrics and config.listen == "127.0.0.1:9435"
    unit = (root / "rawprobe-exporter.service").read_text()
    assert "serve --config /etc/rawprobe/exporter.toml" in unit
    assert "KillSignal=SIGTERM" in unit
