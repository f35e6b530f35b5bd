"""The uprobe PMU's format bits: parsed from sysfs, never assumed."""

from __future__ import annotations

import os

import pytest

from rawprobe import KernelFeatureError
from rawprobe._sys.uprobe import _ConfigBits, _parse_format, uprobe_pmu


def test_parse_single_bit_and_range() -> None:
    assert _parse_format("config:0\n", "retprobe") == _ConfigBits(0, 0)
    assert _parse_format("config:32-63", "ref_ctr_offset") == _ConfigBits(32, 63)
    with pytest.raises(KernelFeatureError):
        _parse_format("config1:0-3", "x")


def test_encode_checks_width() -> None:
    bits = _ConfigBits(32, 63)
    assert bits.encode(0x1234) == 0x1234 << 32
    with pytest.raises(ValueError):
        bits.encode(1 << 32)


def test_this_kernels_pmu_matches_sysfs() -> None:
    base = "/sys/bus/event_source/devices/uprobe"
    if not os.path.exists(f"{base}/type"):
        pytest.skip("no uprobe PMU on this host")
    pmu = uprobe_pmu()
    with open(f"{base}/type") as file:
        assert pmu.type == int(file.read())
    with open(f"{base}/format/retprobe") as file:
        low = int(file.read().split(":")[1].split("-")[0])
    assert pmu.config(retprobe=True) == 1 << low
    assert pmu.config(retprobe=False) == 0
    if pmu.ref_ctr_offset is not None:
        assert pmu.config(False, 0x10) == 0x10 << pmu.ref_ctr_offset.low
