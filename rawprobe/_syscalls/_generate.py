"""Write ``_table.py`` from the installed kernel UAPI and libc headers (run at development time).

    python -m rawprobe._syscalls._generate [--output PATH] [--check]

Nothing in ``_table.py`` is typed by hand. For each architecture the C preprocessor runs over a
translation unit that includes the headers below, twice:

1. ``gcc -E -dD`` keeps every ``#define`` in the output, in source order, between line markers
   that name the header it came from. That gives each macro's name, its header and its place.
2. ``gcc -E`` over the same headers followed by ``const long long __rawprobe_value_N = (NAME);``
   for every selected macro expands each one to a constant expression; compiling the result
   with ``gcc -S`` makes the compiler evaluate it (enums, casts, shifts and all), and the values
   are read back from the assembly (``.quad``/``.zero`` after each label).

The native architecture uses the system headers (Debian ``linux-libc-dev``, ``libc6-dev``).
Another architecture uses Debian's cross headers (``linux-libc-dev-arm64-cross`` installs
``/usr/aarch64-linux-gnu/include``) preprocessed with ``-undef -nostdinc`` and that machine's
predefined macros; the expanded expressions are plain integer arithmetic, which the native
compiler evaluates the same way on any LP64 machine. Constants only libc defines (``R_OK``,
``AF_*``, ``SOCK_*``) come from the native libc headers; they are the same on every Linux
architecture rawprobe supports (glibc ``sysdeps/unix/sysv/linux/bits/socket.h`` and
``socket_type.h`` are shared by x86_64 and aarch64; only MIPS has its own ``SOCK_*``).

Each constant set is selected by rule (which headers, which names), never by listing values.
Sets that come out identical on every architecture are written once (``COMMON``); the others
per architecture (``PER_ARCH``: e.g. ``O_DIRECTORY`` is 0200000 on x86_64 but 040000 on
aarch64, from ``arch/arm64/include/uapi/asm/fcntl.h``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ARCHES",
    "CONSTANT_SETS",
    "ArchHeaders",
    "ConstantSet",
    "GeneratorError",
    "HeadersMissingError",
    "generate_table",
    "main",
]

TABLE_PATH = Path(__file__).with_name("_table.py")


class GeneratorError(Exception):
    """The headers or the compiler did not give what the generator expects."""


class HeadersMissingError(GeneratorError):
    """An architecture's headers (or the compiler) are not installed; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message}; {hint}")


@dataclass(frozen=True)
class ArchHeaders:
    """Where one architecture's UAPI headers are, and how to preprocess them.

    Attributes:
        name: The machine's name as ``uname -m`` prints it (``x86_64``, ``aarch64``).
        triplet: Its Debian multiarch triplet (``x86_64-linux-gnu``).
        cross_predefines: Macros the compiler for that machine predefines and UAPI headers test
            (``asm/bitsperlong.h`` looks at ``__x86_64__``; ``__LP64__`` selects 64-bit
            layouts), used when it is not the machine running the generator.
        cross_package: The Debian package holding its headers for another machine.
    """

    name: str
    triplet: str
    cross_predefines: tuple[str, ...]
    cross_package: str

    @property
    def is_native(self) -> bool:
        return os.uname().machine == self.name

    @property
    def include_dir(self) -> Path:
        """The directory holding ``asm/`` for this architecture."""
        if self.is_native:
            return Path("/usr/include") / self.triplet
        return Path("/usr") / self.triplet / "include"

    def preprocessor_flags(self) -> list[str]:
        if self.is_native:
            return []
        return ["-undef", "-nostdinc", *(f"-D{name}" for name in self.cross_predefines),
                "-isystem", str(self.include_dir)]


ARCHES = (
    ArchHeaders("x86_64", "x86_64-linux-gnu",
                ("__x86_64__", "__x86_64", "__LP64__", "_LP64", "__linux__"),
                "linux-libc-dev-amd64-cross"),
    ArchHeaders("aarch64", "aarch64-linux-gnu",
                ("__aarch64__", "__LP64__", "_LP64", "__linux__"),
                "linux-libc-dev-arm64-cross"),
)

# The headers each translation unit includes. UAPI headers are self-contained (they compile
# without libc); libc's are read for the few constants the kernel does not export.
UAPI_HEADERS = (
    "asm/unistd.h",
    "linux/errno.h",
    "linux/fcntl.h",
    "linux/fs.h",
    "linux/mman.h",
    "asm/signal.h",
    "linux/sched.h",
    "linux/wait.h",
    "linux/time.h",
    "linux/eventpoll.h",
    "linux/resource.h",
    "linux/stat.h",
    "linux/in.h",
    "linux/netlink.h",
)
LIBC_HEADERS = ("unistd.h", "sys/socket.h")


@dataclass(frozen=True)
class ConstantSet:
    """A rule that selects one set of named constants from the headers.

    Attributes:
        key: The set's name in ``_table.py``.
        description: What the set is, for the table's comment.
        headers: Header paths (``asm-generic/fcntl.h``) whose definitions qualify; a macro counts
            when the file it is defined in ends with one of these.
        pattern: A macro qualifies when its whole name matches this regular expression.
        exclude: Names that match this regular expression do not qualify.
        prefer: Names that win when two qualifying macros have one value (otherwise the first
            in header order wins).
        strip_prefix: Removed from each name in the table (``__NR_`` for syscall names).
        source: ``uapi`` (per architecture) or ``libc`` (native libc headers, shared).
        radix: How ``_table.py`` writes the values (16 for flag bits, 8 for mode bits, 10
            otherwise).
        one_name_per_value: Keep one name per value. Off where one value has different names
            for different system calls (``AT_EACCESS`` and ``AT_REMOVEDIR`` are both 0x200).
    """

    key: str
    description: str
    headers: tuple[str, ...]
    pattern: str
    exclude: str = ""
    prefer: tuple[str, ...] = ()
    strip_prefix: str = ""
    source: str = "uapi"
    radix: int = 10
    one_name_per_value: bool = True


CONSTANT_SETS = (
    ConstantSet("syscalls", "system call numbers (__NR_*)",
                ("asm/unistd_64.h", "asm-generic/unistd.h"), r"__NR_\w+",
                exclude=r"__NR_(syscalls|arch_specific_syscall)", strip_prefix="__NR_",
                one_name_per_value=False),
    ConstantSet("errno", "error numbers", ("asm-generic/errno-base.h", "asm-generic/errno.h",
                                           "asm/errno.h"), r"E[A-Z0-9]+"),
    ConstantSet("open_flags", "open(2) flags; O_ACCMODE masks the access mode",
                ("asm/fcntl.h", "asm-generic/fcntl.h"), r"O_\w+|FASYNC",
                exclude=r"O_TMPFILE_MASK", radix=16),
    ConstantSet("at_flags", "*at(2) flags and AT_FDCWD", ("linux/fcntl.h",), r"AT_\w+",
                radix=16, one_name_per_value=False),
    ConstantSet("fcntl_commands", "fcntl(2) commands",
                ("asm-generic/fcntl.h", "linux/fcntl.h"), r"F_\w+",
                exclude=r"F_(RDLCK|WRLCK|UNLCK|EXLCK|SHLCK|LINUX_SPECIFIC_BASE|OWNER_\w+|SEAL_\w+"
                        r"|OK)|F_GETLK64|F_SETLK64|F_SETLKW64"),
    ConstantSet("fd_flags", "file descriptor flags (fcntl F_GETFD/F_SETFD)",
                ("asm-generic/fcntl.h",), r"FD_CLOEXEC", radix=16),
    ConstantSet("seek_whence", "lseek(2) whence", ("linux/fs.h",), r"SEEK_\w+"),
    ConstantSet("mmap_prot", "memory protection (PROT_*)",
                ("asm/mman.h", "asm-generic/mman-common.h"), r"PROT_\w+", radix=16),
    ConstantSet("mmap_flags", "mmap(2) flags; MAP_TYPE and MAP_HUGE_MASK mask fields",
                ("linux/mman.h", "asm/mman.h", "asm-generic/mman.h", "asm-generic/mman-common.h"),
                r"MAP_\w+", exclude=r"MAP_HUGE_\d+[KMG]B|MAP_FILE", radix=16),
    ConstantSet("mremap_flags", "mremap(2) flags", ("linux/mman.h",), r"MREMAP_\w+", radix=16),
    ConstantSet("msync_flags", "msync(2) flags", ("asm-generic/mman-common.h",), r"MS_\w+",
                radix=16),
    ConstantSet("mlockall_flags", "mlockall(2) flags",
                ("asm/mman.h", "asm-generic/mman.h"), r"MCL_\w+", radix=16),
    ConstantSet("madvise_advice", "madvise(2) advice", ("asm-generic/mman-common.h",),
                r"MADV_\w+"),
    ConstantSet("signals", "signal numbers; SIGRTMIN..SIGRTMAX are the real-time ones",
                ("asm/signal.h", "asm-generic/signal.h"), r"SIG[A-Z0-9]+",
                exclude=r"SIGSTKSZ|SIGRTMAX"),
    ConstantSet("sigprocmask_how", "rt_sigprocmask(2) how",
                ("asm/signal.h", "asm-generic/signal-defs.h", "asm-generic/signal.h"),
                r"SIG_(BLOCK|UNBLOCK|SETMASK)"),
    ConstantSet("clone_flags", "clone(2) flags; CSIGNAL masks the exit signal",
                ("linux/sched.h",), r"CLONE_\w+|CSIGNAL", exclude=r"CLONE_ARGS_SIZE_VER\d+",
                radix=16),
    ConstantSet("wait_options", "wait4(2)/waitid(2) options", ("linux/wait.h",),
                r"W[A-Z]+|__W[A-Z]+", radix=16),
    ConstantSet("clock_ids", "clock ids", ("linux/time.h",), r"CLOCK_\w+",
                exclude=r"CLOCKS_\w+"),
    ConstantSet("epoll_ctl_ops", "epoll_ctl(2) operations", ("linux/eventpoll.h",),
                r"EPOLL_CTL_\w+"),
    ConstantSet("rlimit_resources", "resource limits (RLIMIT_*)",
                ("asm-generic/resource.h",), r"RLIMIT_\w+", exclude=r"RLIMIT_INFINITY"),
    ConstantSet("file_types", "file type bits of a mode (S_IF*); S_IFMT masks them",
                ("linux/stat.h",), r"S_IF\w+", radix=8),
    ConstantSet("ip_protocols", "IP protocols (socket(2) with AF_INET, AF_INET6)",
                ("linux/in.h",), r"IPPROTO_\w+", exclude=r"IPPROTO_MAX"),
    # Protocols come first in linux/netlink.h; the socket options defined after them reuse
    # their values and so are left out.
    ConstantSet("netlink_protocols", "netlink protocols (socket(2) with AF_NETLINK)",
                ("linux/netlink.h",), r"NETLINK_\w+"),
    ConstantSet("access_modes", "access(2) modes (POSIX <unistd.h>)", ("/unistd.h",),
                r"[RWXF]_OK", source="libc"),
    ConstantSet("socket_families", "socket address families", ("bits/socket.h",), r"AF_\w+",
                exclude=r"AF_MAX", prefer=("AF_UNIX", "AF_NETLINK"), source="libc"),
    ConstantSet("socket_types", "socket types and the flags socket(2) accepts with them",
                ("bits/socket_type.h",), r"SOCK_\w+", source="libc", radix=16),
)


@dataclass(frozen=True)
class _Macro:
    name: str
    body: str
    file: str
    order: int


_LINE_MARKER = re.compile(r'^# \d+ "(?P<file>[^"]*)"')
_DEFINE = re.compile(r"^#define (?P<name>[A-Za-z_]\w*)(?P<params>\()?\s*(?P<body>.*)$")
_UNDEF = re.compile(r"^#undef (?P<name>[A-Za-z_]\w*)")


def _run(argv: Sequence[str], input_text: str | None = None) -> str:
    try:
        result = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                                check=False)
    except FileNotFoundError:
        raise HeadersMissingError(f"{argv[0]} is not installed",
                                  "apt-get install gcc") from None
    if result.returncode != 0:
        raise GeneratorError(f"{' '.join(argv)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def _translation_unit(headers: Sequence[str]) -> str:
    return "".join(f"#include <{header}>\n" for header in headers)


def read_macros(source: str, flags: Sequence[str]) -> list[_Macro]:
    """Every object-like macro the translation unit ``source`` defines, in definition order.

    Args:
        source: C source text (the ``#include`` lines).
        flags: Extra preprocessor flags (the architecture's).

    Returns:
        The macros still defined at the end, each with the file it was defined in.
    """
    output = _run(["gcc", "-E", "-dD", *flags, "-x", "c", "-"], source)
    current_file = ""
    macros: dict[str, _Macro] = {}
    for order, line in enumerate(output.splitlines()):
        marker = _LINE_MARKER.match(line)
        if marker:
            current_file = marker.group("file")
            continue
        undef = _UNDEF.match(line)
        if undef:
            macros.pop(undef.group("name"), None)
            continue
        define = _DEFINE.match(line)
        if define and define.group("params") is None and not current_file.startswith("<"):
            name = define.group("name")
            macros[name] = _Macro(name, define.group("body").strip(), current_file, order)
    return sorted(macros.values(), key=lambda macro: macro.order)


_VALUE_LABEL = re.compile(r"^__rawprobe_value_(?P<index>\d+):$")
_VALUE_DATA = re.compile(r"^\s*\.(?P<directive>quad|zero)\s+(?P<value>-?\d+)$")


def evaluate_macros(source: str, names: Sequence[str], flags: Sequence[str]) -> list[int]:
    """The integer value of each macro in ``names``, as the C compiler computes it.

    The preprocessor (with ``flags``) expands ``const long long __rawprobe_value_N = (NAME);``
    after ``source``; the native compiler evaluates the expansions into assembly.

    Raises:
        GeneratorError: A name is not an integer constant expression.
    """
    probe = "".join(f"const long long __rawprobe_value_{index} = ({name});\n"
                    for index, name in enumerate(names))
    expanded = _run(["gcc", "-E", *flags, "-x", "c", "-"], source + probe)
    assembly = _run(["gcc", "-S", "-O0", "-w", "-x", "cpp-output", "-o", "-", "-"], expanded)
    values: dict[int, int] = {}
    index: int | None = None
    for line in assembly.splitlines():
        label = _VALUE_LABEL.match(line)
        if label:
            index = int(label.group("index"))
            continue
        data = _VALUE_DATA.match(line)
        if data and index is not None:
            values[index] = 0 if data.group("directive") == "zero" else int(data.group("value"))
            index = None
    missing = [names[i] for i in range(len(names)) if i not in values]
    if missing:
        raise GeneratorError(f"the compiler gave no value for {', '.join(missing)}")
    return [values[i] for i in range(len(names))]


def _alias_target(body: str) -> str:
    """The macro name a definition merely repeats (``#define O_NDELAY O_NONBLOCK``), or ''."""
    stripped = body.strip()
    while stripped.startswith("(") and stripped.endswith(")"):
        stripped = stripped[1:-1].strip()
    return stripped if re.fullmatch(r"[A-Za-z_]\w*", stripped) else ""


def select_constants(rule: ConstantSet, macros: Sequence[_Macro], source: str,
                     flags: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """The (name, value) pairs ``rule`` selects, in header order, one name per value.

    A macro defined as another qualifying macro's name (an alias: ``EWOULDBLOCK``, ``SIGPOLL``)
    is left out; of two macros with one value the first in header order is kept unless the
    rule prefers the other.
    """
    pattern = re.compile(rule.pattern)
    exclude = re.compile(rule.exclude) if rule.exclude else None
    chosen = [macro for macro in macros
              if pattern.fullmatch(macro.name)
              and not (exclude and exclude.fullmatch(macro.name))
              and any(macro.file.endswith("/" + header.lstrip("/")) for header in rule.headers)]
    chosen_names = {macro.name for macro in chosen}
    # glibc names enum members with macros of their own name (#define SOCK_STREAM SOCK_STREAM):
    # those are the constants themselves, not aliases.
    chosen = [macro for macro in chosen
              if _alias_target(macro.body) in ("", macro.name)
              or _alias_target(macro.body) not in chosen_names]
    if not chosen:
        raise GeneratorError(f"no macro in the headers matches the rule for {rule.key}")
    values = evaluate_macros(source, [macro.name for macro in chosen], flags)
    by_value: dict[int, int] = {}
    result: list[tuple[str, int]] = []
    for macro, value in zip(chosen, values, strict=True):
        name = macro.name.removeprefix(rule.strip_prefix)
        if value in by_value and rule.one_name_per_value:
            slot = by_value[value]
            if macro.name in rule.prefer:
                result[slot] = (name, value)
            continue
        by_value[value] = len(result)
        result.append((name, value))
    return tuple(result)


def _headers_version(arch: ArchHeaders) -> str:
    # linux/version.h is architecture-independent: native in /usr/include, cross beside asm/.
    version_h = (Path("/usr/include") if arch.is_native else arch.include_dir) / "linux/version.h"
    text = version_h.read_text()
    major = re.search(r"LINUX_VERSION_MAJOR (\d+)", text)
    minor = re.search(r"LINUX_VERSION_PATCHLEVEL (\d+)", text)
    if major and minor:
        return f"{major.group(1)}.{minor.group(1)}"
    code = re.search(r"LINUX_VERSION_CODE (\d+)", text)
    if not code:
        raise GeneratorError(f"no version in {version_h}")
    return f"{int(code.group(1)) >> 16}.{(int(code.group(1)) >> 8) & 0xFF}"


def check_headers(arch: ArchHeaders) -> None:
    """Raise :class:`HeadersMissingError` unless ``arch``'s headers are installed."""
    unistd = arch.include_dir / "asm" / "unistd.h"
    if not unistd.exists():
        package = "linux-libc-dev" if arch.is_native else arch.cross_package
        raise HeadersMissingError(f"no {arch.name} UAPI headers ({unistd} is missing)",
                                  f"apt-get install {package}")


def _libc_version() -> str:
    text = _run(["gcc", "-E", "-dM", "-x", "c", "-"], "#include <features.h>\n")
    major = re.search(r"#define __GLIBC__ (\d+)", text)
    minor = re.search(r"#define __GLIBC_MINOR__ (\d+)", text)
    if not (major and minor):
        raise GeneratorError("the native libc is not glibc; rawprobe's tables expect glibc's "
                             "headers")
    return f"glibc {major.group(1)}.{minor.group(1)}"


@dataclass(frozen=True)
class GeneratedTables:
    """Everything ``_table.py`` holds, before it is written out."""

    sources: dict[str, str]
    per_arch: dict[str, dict[str, tuple[tuple[str, int], ...]]]
    common: dict[str, tuple[tuple[str, int], ...]]


def collect_tables(arches: Sequence[ArchHeaders] = ARCHES) -> GeneratedTables:
    """Read every constant set from the headers of ``arches`` and of the native libc.

    Raises:
        HeadersMissingError: An architecture's headers are not installed.
        GeneratorError: The headers did not give a set the generator expects.
    """
    for arch in arches:
        check_headers(arch)
    sources: dict[str, str] = {}
    by_arch: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {}
    for arch in arches:
        flags = arch.preprocessor_flags()
        source = _translation_unit(UAPI_HEADERS)
        macros = read_macros(source, flags)
        by_arch[arch.name] = {rule.key: select_constants(rule, macros, source, flags)
                              for rule in CONSTANT_SETS if rule.source == "uapi"}
        where = "native" if arch.is_native else "cross"
        sources[arch.name] = f"Linux {_headers_version(arch)} UAPI headers ({where}, " \
                             f"{arch.include_dir})"
    libc_source = _translation_unit(LIBC_HEADERS)
    libc_macros = read_macros(libc_source, [])
    common = {rule.key: select_constants(rule, libc_macros, libc_source, [])
              for rule in CONSTANT_SETS if rule.source == "libc"}
    sources["libc"] = f"{_libc_version()} headers (/usr/include)"
    per_arch: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {a.name: {} for a in arches}
    for rule in CONSTANT_SETS:
        if rule.source != "uapi":
            continue
        variants = {by_arch[arch.name][rule.key] for arch in arches}
        if len(variants) == 1 and rule.key != "syscalls":
            common[rule.key] = variants.pop()
        else:
            for arch in arches:
                per_arch[arch.name][rule.key] = by_arch[arch.name][rule.key]
    return GeneratedTables(sources, per_arch, common)


def _format_value(value: int, radix: int) -> str:
    if radix == 16 and value >= 0:
        return hex(value)
    if radix == 8 and value >= 0:
        return oct(value)
    return str(value)


def _format_set(pairs: tuple[tuple[str, int], ...], radix: int, indent: str) -> list[str]:
    """The pairs, as many to a line as fit in 99 columns (the table stays short to read)."""
    lines = [f"{indent}("]
    line = f"{indent}   "
    for name, value in pairs:
        item = f' ("{name}", {_format_value(value, radix)}),'
        if len(line) + len(item) > 99 and line.strip():
            lines.append(line)
            line = f"{indent}   "
        line += item
    if line.strip():
        lines.append(line)
    lines.append(f"{indent}),")
    return lines


def render_table(tables: GeneratedTables) -> str:
    """The text of ``_table.py`` for ``tables``."""
    radix = {rule.key: rule.radix for rule in CONSTANT_SETS}
    descriptions = {rule.key: rule.description for rule in CONSTANT_SETS}
    out = [
        '"""Named constants of the Linux system call interface, per architecture.',
        "",
        "GENERATED by ``python -m rawprobe._syscalls._generate`` from the headers below; do not",
        "edit. Each set is a tuple of (name, value) in header order, one name per value.",
        "",
    ]
    out += [f"- {key}: {text}" for key, text in sorted(tables.sources.items())]
    out += ['"""', "", "from __future__ import annotations", "",
            '__all__ = ["COMMON", "PER_ARCH", "SOURCES"]', "",
            "SOURCES: dict[str, str] = {"]
    out += [f'    "{key}": "{text}",' for key, text in sorted(tables.sources.items())]
    out += ["}", "", "# Sets that are the same on every architecture.",
            "COMMON: dict[str, tuple[tuple[str, int], ...]] = {"]
    for key in sorted(tables.common):
        out.append(f"    # {descriptions[key]}")
        out.append(f'    "{key}": (')
        out += _format_set(tables.common[key], radix[key], "    ")[1:]
    out += ["}", "", "# Sets that differ between architectures (system call numbers always do).",
            "PER_ARCH: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {"]
    for arch in sorted(tables.per_arch):
        out.append(f'    "{arch}": {{')
        for key in sorted(tables.per_arch[arch]):
            out.append(f"        # {descriptions[key]}")
            out.append(f'        "{key}": (')
            out += _format_set(tables.per_arch[arch][key], radix[key], "        ")[1:]
        out.append("    },")
    out += ["}", ""]
    return "\n".join(out)


def generate_table(arches: Sequence[ArchHeaders] = ARCHES) -> str:
    """Read the headers and return the text ``_table.py`` should have.

    Raises:
        HeadersMissingError: Headers or the compiler are not installed.
        GeneratorError: The headers did not give what the generator expects.
    """
    return render_table(collect_tables(arches))


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``_table.py`` (or, with ``--check``, say whether it is up to date)."""
    parser = argparse.ArgumentParser(prog="python -m rawprobe._syscalls._generate",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=TABLE_PATH,
                        help="where to write the table (default: the package's _table.py)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the table differs from the headers")
    options = parser.parse_args(argv)
    try:
        text = generate_table()
    except GeneratorError as error:
        print(f"rawprobe._syscalls._generate: {error}", file=sys.stderr)
        return 1
    if options.check:
        same = options.output.exists() and options.output.read_text() == text
        if not same:
            print(f"{options.output} is out of date; run python -m rawprobe._syscalls._generate",
                  file=sys.stderr)
        return 0 if same else 1
    with tempfile.NamedTemporaryFile("w", dir=options.output.parent, delete=False,
                                     suffix=".tmp") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # a module of the package: readable by whoever imports it
    os.replace(tmp.name, options.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
