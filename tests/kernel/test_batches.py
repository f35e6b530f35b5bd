"""Tracer.batches(): a real stream read as columns gives what events give, in order."""

from __future__ import annotations

from pathlib import Path

from rawprobe import Tracer


def test_columns_of_a_live_stream(add_program: Path) -> None:
    prog = str(add_program)
    calls = 20_000
    with Tracer(command=[prog, str(calls)]) as tracer:
        tracer.add(f"p:{prog}:add a=%di:s32 b=%si:s32")
        tracer.add(f"r:{prog}:add ret=$retval:s32")
        seen: dict[str, list[int]] = {"add": [], "add__return": []}
        twos = 0
        for batch in tracer.batches(timeout=60):
            assert batch.layout is not None
            columns = batch.columns()
            assert all(len(column) == batch.count for column in columns.values())
            assert set(columns["comm"]) == {"main"}
            if batch.layout.event == "add":
                seen["add"] += list(columns["a"])
                twos += sum(1 for b in columns["b"] if b == 2)
            else:
                seen["add__return"] += list(columns["ret"])
        stats = tracer.stats()
    assert seen["add"] == list(range(1, calls + 1))
    assert seen["add__return"] == [a + 2 for a in range(1, calls + 1)]
    assert twos == calls and stats.events == 2 * calls and stats.lost == 0
