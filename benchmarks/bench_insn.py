"""How fast rawprobe decodes x86-64 instruction lengths, the cost of a SYMBOL+OFFSET check.

1. Throughput: every function of a large library (libc by default) decoded from its start,
   in instructions and bytes per second.
2. ``is_instruction_boundary`` on the largest functions: the cost of checking an offset at
   their end, the worst case (file read included).

Run as: python benchmarks/bench_insn.py [ELF]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import host_description
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from rawprobe._plan.insn import UndecodableInstruction, instruction_starts, is_instruction_boundary

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def functions(path: str) -> tuple[bytes, int, int, list[tuple[int, int, str]]]:
    """(.text bytes, its address, its file offset, [(address, size, name)] inside it)."""
    with open(path, "rb") as file:
        elf = ELFFile(file)
        text = elf.get_section_by_name(".text")
        data, address, file_offset = text.data(), text["sh_addr"], text["sh_offset"]
        found = {}
        for section in elf.iter_sections():
            if isinstance(section, SymbolTableSection):
                for symbol in section.iter_symbols():
                    value, size = symbol["st_value"], symbol["st_size"]
                    if (
                        symbol["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC")
                        and size > 0
                        and address <= value < address + len(data)
                    ):
                        found.setdefault(value, (value, size, symbol.name))
    return data, address, file_offset, sorted(found.values())


def throughput(path: str) -> None:
    data, address, _file_offset, symbols = functions(path)
    started = time.perf_counter()
    instructions = decoded_bytes = undecodable = 0
    for value, size, _name in symbols:
        start = value - address
        try:
            instructions += len(instruction_starts(data, start, start + size))
            decoded_bytes += size
        except UndecodableInstruction:
            undecodable += 1
    elapsed = time.perf_counter() - started
    print(
        f"decode: {len(symbols):,} functions ({undecodable} with undecodable bytes), "
        f"{instructions:,} instructions, {decoded_bytes / 1e6:.2f} MB in {elapsed:.2f} s -> "
        f"{instructions / elapsed / 1e6:.2f} M instructions/s, "
        f"{decoded_bytes / elapsed / 1e6:.2f} MB/s"
    )


def boundary_checks(path: str, count: int = 5, repeat: int = 20) -> None:
    data, address, file_offset, symbols = functions(path)
    largest = sorted(symbols, key=lambda symbol: symbol[1], reverse=True)[:count]
    print(f"is_instruction_boundary at the last instruction of the {count} largest functions "
          f"(median of {repeat}):")
    for value, size, name in largest:
        start = value - address
        last = instruction_starts(data, start, start + size)[-1]
        function_offset = start + file_offset
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            found = is_instruction_boundary(path, function_offset, size, last + file_offset)
            samples.append(time.perf_counter() - began)
        print(f"  {name:<40} {size:>7,} bytes  {statistics.median(samples) * 1000:7.2f} ms  "
              f"({found})")


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else LIBC
    print(host_description())
    print(f"{path}")
    throughput(path)
    boundary_checks(path)


if __name__ == "__main__":
    main()
