"""The plan cache: a word planned from the cache is the word planned afresh, an entry is used
only while its file is the one it describes, and a warm start needs none of the planning
modules (construct, the parsers, the compiler, pyelftools, dataclasses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from rawprobe._plan.planner import Planner
from rawprobe._plan.session import Plan
from rawprobe._probe.aggregations import AggregationSpec, HistSpec

pytestmark = pytest.mark.usefixtures("private_symbol_cache")


def plan_of(*words: str, **options: Any) -> tuple[Plan, list[str], list[list[str]]]:
    planner = Planner(**options)
    names = [planner.add(word) for word in words]
    try:
        return planner.plan(), planner.warnings, names
    finally:
        planner.release_files()


def described(plan: Plan) -> list[tuple[Any, ...]]:
    """Everything about a plan's events that a backend or the output reads."""
    return [
        (e.event_id, plan.configs[e.config_id], e.path, e.file_offset, e.retprobe,
         e.ref_ctr_offset, e.name, e.layout.state(), e.layout.struct.format, e.reads_memory,
         e.tally, e.tally_only, e.role, e.from_glob, e.at_entry, e.fetchargs, e.usdt_args,
         e.filter, e.key_decoder is not None)
        for e in plan.events
    ]


@pytest.mark.parametrize("options", [
    {},
    {"aggregation": AggregationSpec("hist", hist=HistSpec("latency"))},
    {"aggregation": AggregationSpec("count", by="a")},
    {"string_size": 32, "stack": True},
])
def test_a_cached_plan_is_the_fresh_plan(add_program: Path, tmp_path: Path,
                                         options: dict[str, Any]) -> None:
    program = tmp_path / "main"
    shutil.copy2(add_program, program)
    words = [f"p:{program}:add a=%di:s32 b=%si:u64 s=+0(%di):string",
             f"p:{program}:ma* a=%di:x32"]
    if "aggregation" in options and options["aggregation"].hist is not None:
        words = [f"p:{program}:add a=%di:s32"]
    first = plan_of(*words, **options)
    second = plan_of(*words, **options)
    assert described(second[0]) == described(first[0])
    assert second[1:] == first[1:]
    # The events of the second plan came from the cache: their details are still pickled.
    assert all(e.details._values is None for e in plan_of(*words, **options)[0].events)


def test_an_entry_is_used_only_for_the_file_it_describes(add_program: Path,
                                                         tmp_path: Path) -> None:
    program = tmp_path / "main"
    shutil.copy2(add_program, program)
    word = f"p:{program}:add a=%di:s32"
    plan_of(word)
    cached = plan_of(word)[0]
    assert cached.events[0].details._values is None  # from the cache
    # The same name, another file: planned afresh.
    program.unlink()
    shutil.copy2(add_program, program)
    fresh = plan_of(word)[0]
    assert fresh.events[0].details._values is not None
    assert described(fresh) == described(cached)


def test_filters_and_options_key_the_entry(add_program: Path, tmp_path: Path) -> None:
    program = tmp_path / "main"
    shutil.copy2(add_program, program)
    word = f"p:{program}:add a=%di:s32"
    plain = plan_of(word)[0]
    planner = Planner()
    planner.add(word, "a > 3")
    filtered = planner.plan()
    planner.release_files()
    assert filtered.configs != plain.configs
    assert plan_of(word, string_size=64)[0].events[0].details._values is not None


def test_a_warm_start_imports_no_planning_module(add_program: Path, tmp_path: Path) -> None:
    program = tmp_path / "main"
    shutil.copy2(add_program, program)
    script = (
        "import sys, json\n"
        "from rawprobe._tracer import Tracer\n"
        f"tracer = Tracer()\n"
        f"tracer.add({f'p:{program}:add a=%di:s32 b=%si:s32'!r})\n"
        "tracer.close()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(2):  # the first run fills the cache
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, check=True, timeout=60)
    modules = set(json.loads(run.stdout))
    heavy = {"construct", "elftools", "dataclasses", "inspect", "typing", "logging",
             "rawprobe._probe.fetchargs", "rawprobe._probe.words", "rawprobe._plan.compile",
             "rawprobe._symbols._resolve", "rawprobe._symbols._functions"}
    assert not heavy & modules, sorted(heavy & modules)
