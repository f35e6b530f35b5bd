"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` runs every scenario
against real probes and produces numbers for each. The numbers themselves are not judged here
(the host is shared and noisy); only that every scenario ran and measured something.

Peers are left out (``--peers none``): they are optional, and bcc alone would take most of
the time budget. The committed ``benchmarks/RESULTS.md`` is not touched.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, require_kernel_tracing

pytestmark = pytest.mark.kernel


def test_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    require_kernel_tracing()
    numbers = tmp_path / "results.json"
    results = tmp_path / "RESULTS.md"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--peers", "none",
         "--results", str(results), "--json", str(numbers)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    data = json.loads(numbers.read_text())
    assert sorted(data["scenarios"]) == ["1", "2", "3", "4", "5", "6", "7", "8"]
    for number, scenario in data["scenarios"].items():
        assert scenario["error"] is None, (number, scenario["error"])
        finite = [value for value in scenario["numbers"].values() if math.isfinite(value)]
        assert finite, f"scenario {number} measured nothing: {scenario['numbers']}"
        assert scenario["goals"], f"scenario {number} judged no goal"
    text = results.read_text()
    assert "# rawprobe benchmark results" in text and "## 7. System calls" in text
    assert "## 8. Following a command" in text
    statuses = {goal["status"] for scenario in data["scenarios"].values()
                for goal in scenario["goals"]}
    assert statuses <= {"met", "missed", "inconclusive", "not measured"}, statuses
