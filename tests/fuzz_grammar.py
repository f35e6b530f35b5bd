"""Random probe words, filters and damaged ELF files for the fuzz tests (tests/test_cli_fuzz.py).

A grammar of the probe language with its odd corners (numbers past 64 bits, nesting past
every limit, escapes, quotes, typos), drawn from a seeded :class:`random.Random`: fast enough
for tens of thousands of inputs per run, and each input is printed when it fails.
"""

from __future__ import annotations

import random
import struct

__all__ = ["Grammar", "hot_offsets", "mutate_elf"]

_REGISTERS = ["%di", "%si", "%dx", "%cx", "%r8", "%ax", "%sp", "%ip", "%rip", "%nope", "%",
              "%r15", "%al", "%xmm0"]
_VARIABLES = ["$arg1", "$arg6", "$arg7", "$arg0", "$retval", "$stack", "$stack0", "$stack2048",
              "$stack2049", "$comm", "$nope", "$", "arg0", "arg5", "arg6", "retval", "x",
              "common_pid", '\\"text"', '\\"', "\\", "@", "@+", '\\"a b"']
_TYPES = ["", ":s8", ":u16", ":x32", ":s64", ":x64", ":u64", ":char", ":string", ":ustring",
          ":str", ":symbol", ":b3@2/8", ":b0@0/8", ":b9@0/8", ":b1@63/64", ":b64@0/64", ":u8[3]",
          ":string[2]", ":char[64]", ":u8[0]", ":u8[65]", ":s31", ":symstr", ":%pd", ":",
          ":x8[1]", ":str[64]", ":u8[99999999999999999999]", ":b99999999999999999999@0/8"]
_NAMES = ["", "", "", "a=", "b=", "x1=", "1bad=", "=", "a-b=", "pid=", "comm=", "s="]
_HEADS = ["p:", "r:", "usdt:", "", "p:ev ", "r:g/ev ", "p ", "r ", "usdt ", "q:", "uprobe:",
          "p:1bad ", "tp:", "p:a/b/c ", "p:ev", "usdt:n ", "sys:", "k:"]
_LOCATIONS = ["add", "main", "work", "add+4", "add+1", "add+0x10", "work+4", "work+1", "main+3",
              "add+99999999999999999999", "0x1149", "0x0", "0x1", "0xffffffffffffffffffff", "a*",
              "*", "[", "ma?n", "demo:tick", "tick", "demo:tock", "t*", "demo:*", "nosuch",
              "ns::f", "f[abi:cxx11]", "add@GLIBC_2.2.5", "add@@V", "", ":", "::", "-1",
              "add+-4", "0x", "add+0x"]
_SUFFIXES = ["", "", "", "%return", "(0x10)", "(99999999999999999999)", "(08)", "%return(0x4)",
             "(0)"]
# Pieces that plan: most words a user types are nearly right.
_VALID_ARGS = ["a=%di:s32", "b=%si:u64", "$arg1", "arg0", "s=+0(%di):string", "+8(+0(%si)):x64",
               "$stack1", "c=$comm", "@0x4010:u32", "arr=+0(%dx):u8[4]", "bf=+0(%di):b3@1/8",
               "sym=%ip:symbol", "str=$arg1:string", "k=\\42", 't=\\"const"', "$stack",
               "ch=+0(%di):char", "w=+0(%di):string[2]", "@+0x4010:s16", "n=-8(%sp):s64"]
_VALID_RETURN_ARGS = ["$retval", "r=$retval:s32", "p=+0($retval):string", "retval", "%ax:x16"]
_VALID_USDT_ARGS = ["$arg1", "$arg2:string", "$arg3", "+0($arg3):s32", "+4($arg3):s32",
                    "x=$arg1:s64", "$arg4", "n=$arg2:u8", "+0(+0($arg3)):s8"]
_VALID_PLACES = {0: ["add", "main", "add+1", "add+4", "0x1139", "0x1149", "a*", "ma*"],
                 1: ["work", "main", "work+1", "w*", "*"]}
_VALID_USDT_PLACES = ["demo:tick", "tick", "demo:tock", "demo:*", "t*", "tock"]
_TYPO_ALPHABET = " :%$@+-()[]\\\"=*?/0123456789abcdefxsu"
_FIELDS = ["a", "b", "s", "c", "arr", "pid", "tid", "cpu", "comm", "nope", "_x", "x1"]
_OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "&", "~", "!~", "=", "<>", ""]
_STRINGS = ['"\\x?"', '"\\x41"', '"\\xff"', '"\\q"', '"a*"', '"*a"', '"' + "x" * 40 + '"', '"',
            '""', "x", '"é"', '"a\\"b"', '"\\\\"', '"\\n"']
_FILTER_ALPHABET = 'abs()!&|=<>~"\\0x1 '


class Grammar:
    """Random inputs, reproducible from the seed."""

    def __init__(self, seed: int, targets: list[str]) -> None:
        self.rng = random.Random(seed)
        self.targets = targets

    def number(self) -> str:
        rng = self.rng
        choice = rng.randrange(6)
        if choice == 0:
            return str(rng.randrange(1 << 16))
        if choice == 1:
            return hex(rng.randrange(1 << rng.choice([8, 32, 63, 64, 65, 70])))
        if choice == 2:
            return str(rng.randrange(-(1 << 70), 1 << 70))
        return rng.choice(["0", "08", "0x", "-0", "00", "0X1f", "18446744073709551615",
                           "18446744073709551616", "9223372036854775808",
                           "-9223372036854775809", "4096", "1"])

    def source(self, depth: int = 0) -> str:
        rng = self.rng
        if depth < 9 and rng.random() < 0.35:
            close = rng.choice([")", ")", ")", "", "))"])
            return (f"{rng.choice('+-')}{rng.choice(['', 'u'])}{self.number().lstrip('-')}"
                    f"({self.source(depth + 1)}{close}")
        choice = rng.randrange(8)
        if choice < 3:
            return rng.choice(_REGISTERS)
        if choice < 5:
            return rng.choice(_VARIABLES)
        prefix = rng.choice(["@", "@+", "\\", "$stack", "$arg"])
        return prefix + self.number().lstrip("-" if prefix != "\\" else "")

    def fetcharg(self) -> str:
        rng = self.rng
        kind = rng.choice(_TYPES) if rng.random() < 0.9 else ":" + "".join(
            rng.choice("sux0123456789b@/[]:") for _ in range(rng.randrange(7)))
        return f"{rng.choice(_NAMES)}{self.source()}{kind}"

    def target(self) -> str:
        rng = self.rng
        if rng.random() < 0.8:
            return rng.choice(self.targets)
        return rng.choice(["./nonexistent", "/proc/self/mem", "/dev/zero", "/", "/etc/passwd",
                           "libnosuch", f'"{self.targets[0]}"', '"unterminated', '""', "",
                           "a b", "/proc/self/fd/0", "/sys/kernel/tracing/trace_pipe"])

    def location(self) -> str:
        rng = self.rng
        if rng.random() < 0.85:
            return rng.choice(_LOCATIONS)
        return "".join(rng.choice("admintw+0x1*?:[]@%()") for _ in range(rng.randrange(10)))

    def plausible_word(self) -> str:
        """A word that is right, or nearly: it goes through resolution, the safety checks
        and the configuration."""
        rng = self.rng
        kind = rng.choice(["p", "p", "r", "usdt"])
        if kind == "usdt":
            target = self.targets[-1]
            place, pool = rng.choice(_VALID_USDT_PLACES), _VALID_USDT_ARGS
        else:
            which = rng.randrange(len(self.targets))
            target = self.targets[which]
            place = rng.choice(_VALID_PLACES.get(which, ["main"]))
            pool = _VALID_ARGS + (_VALID_RETURN_ARGS if kind == "r" else [])
        args = rng.sample(pool, rng.choice([0, 1, 1, 2, 3]))
        if args and rng.random() < 0.3:  # one piece out of line
            args[rng.randrange(len(args))] = self.fetcharg()
        name = rng.choice(["", "", "", "ev ", "grp/ev "]) if kind != "usdt" else ""
        head = f"{kind}:{name}" if name else f"{kind}:"
        return " ".join([f"{head}{target}:{place}", *self.unique(args)])

    @staticmethod
    def unique(args: list[str]) -> list[str]:
        # Two unnamed args get arg1, arg2...; two named alike would only be refused.
        seen, result = set(), []
        for arg in args:
            name = arg.split("=", 1)[0] if "=" in arg.split("(", 1)[0] else None
            if name is None or name not in seen:
                seen.add(name)
                result.append(arg)
        return result

    def word(self) -> str:
        rng = self.rng
        choice = rng.random()
        if choice >= 0.6 and self.targets:
            return self.plausible_word()
        if choice < 0.05:
            return "".join(rng.choice(_TYPO_ALPHABET) for _ in range(rng.randrange(40)))
        args = " ".join(self.fetcharg() for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4])))
        word = (f"{rng.choice(_HEADS)}{self.target()}:{self.location()}{rng.choice(_SUFFIXES)}"
                + (" " + args if args else ""))
        return self.typos(word, _TYPO_ALPHABET) if choice < 0.3 else word

    def typos(self, text: str, alphabet: str) -> str:
        """``text`` with characters inserted, removed or replaced."""
        rng = self.rng
        chars = list(text)
        for _ in range(rng.randrange(1, 5)):
            at = rng.randrange(len(chars) + 1)
            action = rng.randrange(3)
            if action == 0:
                chars.insert(at, rng.choice(alphabet))
            elif at < len(chars):
                if action == 1:
                    del chars[at]
                else:
                    chars[at] = rng.choice(alphabet)
        return "".join(chars)

    def comparison(self) -> str:
        rng = self.rng
        value = self.number() if rng.random() < 0.55 else (
            rng.choice(_STRINGS) if rng.random() < 0.6 else
            '"' + "".join(rng.choice('abc*é\\"xntq0?') for _ in range(rng.randrange(8))) + '"')
        return f"{rng.choice(_FIELDS)} {rng.choice(_OPERATORS)} {value}"

    def expression(self, depth: int = 0) -> str:
        rng = self.rng
        choice = rng.random()
        if depth > 5 or choice < 0.4:
            return self.comparison()
        if choice < 0.55:
            return "!" + self.expression(depth + 1)
        if choice < 0.7:
            return f"({self.expression(depth + 1)})"
        operator = rng.choice(["&&", "||", "&&", "||", "&"])
        return f"{self.expression(depth + 1)} {operator} {self.expression(depth + 1)}"

    def filter(self) -> str:
        rng = self.rng
        choice = rng.random()
        if choice < 0.03:
            count = rng.randrange(1, 300)
            return rng.choice(["(" * count + "a == 1" + ")" * count, "!" * count + "a == 1",
                               " && ".join(["a == 1"] * count)])
        if choice < 0.08:
            return "".join(rng.choice(_FILTER_ALPHABET) for _ in range(rng.randrange(30)))
        expression = self.expression()
        return self.typos(expression, _FILTER_ALPHABET) if choice < 0.3 else expression


def hot_offsets(data: bytes) -> list[int]:
    """Where damage matters most: the ELF header, program and section headers, and the
    USDT notes."""
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phnum, _shentsize, shnum = struct.unpack_from("<HHH", data, 0x38)
    spots = list(range(64))
    spots += range(phoff, min(len(data), phoff + 56 * phnum))
    spots += range(shoff, min(len(data), shoff + 64 * shnum))
    note = data.find(b"stapsdt\0")
    if note > 0:
        spots += range(max(0, note - 12), min(len(data), note + 80))
    return spots


def mutate_elf(rng: random.Random, original: bytes, hot: list[int]) -> bytes:
    """A copy of ``original`` with a few bytes, or whole 64-bit fields, changed."""
    mutated = bytearray(original)
    for _ in range(rng.randrange(1, 9)):
        position = rng.choice(hot) if rng.random() < 0.7 else rng.randrange(len(mutated))
        if rng.random() < 0.25 and position + 8 <= len(mutated):
            # A whole field: sizes and offsets of 2^62, 2^63 - 1, -1 and the like.
            value = rng.choice([1, 1 << 62, (1 << 63) - 1, (1 << 64) - 1, 1 << 32, 0x40,
                                len(original), rng.randrange(1 << 64)])
            mutated[position:position + 8] = struct.pack("<Q", value)
        else:
            mutated[position] = rng.randrange(256)
    return bytes(mutated)
