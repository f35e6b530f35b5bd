"""rawprobe's x86-64 length decoder (rawprobe._plan.insn) against the capstone package.

Why rawprobe keeps a decoder of its own: this script measures, for every function of a few
large binaries, whether capstone finds the same instruction starts, how fast each decodes, and
what importing capstone costs at start-up. capstone is not a rawprobe dependency: install it
into the environment that runs this (``pip install capstone``).

Run as: python benchmarks/compare_insn_capstone.py [ELF ...]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_insn import functions
from common import host_description

from rawprobe._plan.insn import UndecodableInstruction, instruction_length

DEFAULT_BINARIES = [
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
    "/usr/bin/bash",
    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
]


def import_cost(statement: str, repeat: int = 7) -> float:
    """Median seconds that ``statement`` takes in a fresh interpreter."""
    code = (
        "import time; began = time.perf_counter(); "
        f"{statement}; print(time.perf_counter() - began)"
    )
    samples = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(repeat)
    ]
    return statistics.median(samples)


def ours(code: bytes, start: int, end: int) -> list[int]:
    """Instruction lengths from ``start``, up to ``end`` or the first undecodable bytes."""
    lengths, position = [], start
    while position < end:
        try:
            length = instruction_length(code, position)
        except UndecodableInstruction:
            break
        lengths.append(length)
        position += length
    return lengths


def main() -> None:
    try:
        from importlib.metadata import version

        import capstone
    except ImportError:
        sys.exit("capstone is not installed: pip install capstone")
    print(host_description())
    print(f"capstone {version('capstone')}")
    engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    print(f"import, fresh interpreter (median of 7): rawprobe._plan.insn "
          f"{import_cost('import rawprobe._plan.insn') * 1000:.1f} ms, capstone "
          f"{import_cost('import capstone') * 1000:.1f} ms")
    for path in sys.argv[1:] or DEFAULT_BINARIES:
        data, address, _file_offset, symbols = functions(path)
        same = differ = 0
        examples: list[str] = []
        time_ours = time_capstone = 0.0
        for value, size, name in symbols:
            start = value - address
            began = time.perf_counter()
            mine = ours(data, start, start + size)
            time_ours += time.perf_counter() - began
            began = time.perf_counter()
            theirs = [entry[1] for entry in engine.disasm_lite(data[start : start + size], value)]
            time_capstone += time.perf_counter() - began
            if mine == theirs:
                same += 1
            else:
                differ += 1
                if len(examples) < 5:
                    examples.append(f"{name}: {len(mine)} instructions here, {len(theirs)} "
                                    "by capstone")
        instructions = sum(len(ours(data, v - address, v - address + s)) for v, s, _ in symbols)
        print(f"{path}: {len(symbols)} functions, {instructions} instructions; same starts "
              f"{same}, different {differ}; rawprobe._plan.insn {time_ours * 1000:.0f} ms, "
              f"capstone {time_capstone * 1000:.0f} ms")
        for example in examples:
            print(f"  {example}")


if __name__ == "__main__":
    main()
