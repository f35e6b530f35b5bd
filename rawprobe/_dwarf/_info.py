"""The debug information of one probed file: functions, variables, source lines.

:class:`DebugInfo` answers what a probe word needs from DWARF, the way perf probe answers it
(tools/perf/util/probe-finder.c and dwarf-aux.c), so that rawprobe and perf read the same values:

- a function's instances (its out-of-line body and every inlined copy) and where perf probe
  puts a function probe (after the prologue in an unoptimized unit);
- the parameters and variables in scope at an address, and whether each can be read there;
- a variable expression (``o->in->x``) compiled into the kernel fetch-arg that reads it;
- the addresses where a source line's code starts.

Everything is read lazily: a question about one address reads the unit (``.debug_aranges``
says which) and the one function containing it. Questions by name (:meth:`functions`, globals of
other units) use an index of every unit built by one fast pass over ``.debug_info``
(``_scan``); questions by source file read the line tables of the units that name the file.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .._errors import RawprobeError
from .._symbols.elf import ElfReader
from .._sys.arch import Arch
from ._cfi import FrameTable
from ._compile import Compiler
from ._elf import LoadSegment, check_compressed_sections, has_section, load_segments, symbols
from ._errors import DwarfError, FunctionNotFoundError
from ._functions import GLOB, Functions
from ._lines import Lines, same_file
from ._model import CompiledVariable, FunctionInstance, LineAddress, SourceLine, Variable
from ._unit import Scope, Unit, die_name, die_ranges, linkage_name
from ._variables import Variables

__all__ = ["DebugInfo"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """Turn what a damaged or unusual DWARF makes pyelftools raise into a :class:`DwarfError`
    naming the file, so bad input never ends in a traceback."""

    @functools.wraps(method)
    def wrapper(self: DebugInfo, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except RawprobeError:
            raise
        except Exception as error:  # pyelftools raises many kinds
            raise DwarfError(
                f"{self.debug_path}: its debug information is damaged or uses something "
                f"rawprobe cannot read ({type(error).__name__}: {error}); rebuild the program "
                "or reinstall its debug package") from error

    return wrapper  # type: ignore[return-value]

class DebugInfo:
    """DWARF of one probed file, opened with :func:`rawprobe._dwarf.open_debug_info`.

    The work is shared out: :mod:`._functions` (functions and the name index),
    :mod:`._variables` (locations, variables in scope), :mod:`._compile` (expressions into
    fetch-args) and :mod:`._lines` (source lines); this class holds the files, the units and
    the lock, and answers.

    Attributes:
        path: The probed file.
        debug_path: The file the DWARF was read from (``path`` itself, or a separate debug file).
        source: ``self``, ``build-id`` or ``debuglink``: how ``debug_path`` was found.
    """

    def __init__(self, target: ElfReader, debug: ElfReader, source: str, arch: Arch) -> None:
        self.path = target.path
        self.debug_path = debug.path
        self.source = source
        self._target = target
        self._debug = debug
        self._arch = arch
        for elf_file in dict.fromkeys((target, debug)):
            check_compressed_sections(elf_file)
        self._dwarf: Any = debug.elf.get_dwarf_info(relocate_dwarf_sections=False)
        self._segments: list[LoadSegment] = load_segments(target)
        # Call frame information: the probed file's .eh_frame first (a separate debug file
        # keeps only an empty, SHT_NOBITS, copy), then the debug file's .debug_frame.
        cfi_sources = []
        for elf_file in dict.fromkeys((target, debug)):
            if has_section(elf_file, ".eh_frame") or has_section(elf_file, ".debug_frame"):
                cfi_sources.append(elf_file.elf.get_dwarf_info(relocate_dwarf_sections=False)
                                   if elf_file is not debug else self._dwarf)
        self._frames = FrameTable(cfi_sources)
        self._lock = threading.RLock()
        self._units: dict[int, Unit] = {}
        self._aranges: Any = None
        self._unit_ranges: list[tuple[int, int, int]] | None = None
        self._symbols: list[dict[str, list[tuple[int, int]]]] | None = None
        self._naming: dict[str, list[int]] = {}
        self._functions = Functions(self)
        self._variables = Variables(self)
        self._compiler = Compiler(self, self._variables)
        self._lines = Lines(self)

    def close(self) -> None:
        """Close the files (the object must not be used afterwards)."""
        self._target.close()
        if self._debug is not self._target:
            self._debug.close()

    def __repr__(self) -> str:
        return f"DebugInfo({self.path!r}, from {self.source} {self.debug_path!r})"

    def _symbol_tables(self) -> list[dict[str, list[tuple[int, int]]]]:
        """Function and data symbols, (value, ``STT_*``) by name: the debug file's, then the
        probed file's."""
        if self._symbols is None:
            self._symbols = [symbols(self._debug)]
            if self._target is not self._debug:
                self._symbols.append(symbols(self._target))
        return self._symbols

    # -- units ------------------------------------------------------------------------------

    def _unit(self, cu_offset: int, cu: Any = None) -> Unit:
        unit = self._units.get(cu_offset)
        if unit is None:
            index = self._functions.index
            hints = index.units.get(cu_offset, (None, None)) if index else (None, None)
            unit = Unit(cu if cu is not None else self._dwarf.get_CU_at(cu_offset), *hints)
            self._units[cu_offset] = unit
        return unit

    def _iter_units(self) -> Iterator[Unit]:
        for cu in self._dwarf.iter_CUs():
            yield self._unit(cu.cu_offset, cu)

    def _units_naming(self, file: str) -> list[Unit]:
        """The units whose line table names a source file (read through the name index, so
        the others' DIEs are not read), remembered by file."""
        offsets = self._naming.get(file)
        if offsets is None:
            self._functions.scanned()
            offsets = [unit.cu.cu_offset for unit in self._iter_units()
                       if any(name and same_file(name, file) for name in unit.file_names())]
            self._naming[file] = offsets
        return [self._unit(offset) for offset in offsets]

    def _unit_at(self, address: int) -> Unit | None:
        """The unit whose code contains ``address``: ``.debug_aranges`` says, for the units it
        lists (gcc lists all of them); the units' own ranges say for the others (clang emits
        no ``.debug_aranges`` by default)."""
        if self._unit_ranges is None:
            listed: set[int] = set()
            try:
                self._aranges = self._dwarf.get_aranges()
                if self._aranges is not None:
                    # Units without code have an empty set, which the public entries omit;
                    # should pyelftools drop this method, the except below copes (slower).
                    listed = {entry.info_offset
                              for entry in self._aranges._get_entries(need_empty=True)}
            except Exception:  # damaged aranges: the units' own ranges, then
                self._aranges = None
            table = []
            for cu in self._dwarf.iter_CUs():
                if cu.cu_offset in listed:
                    continue
                unit = self._unit(cu.cu_offset)
                table += [(low, high, cu.cu_offset) for low, high in die_ranges(unit.top, unit)]
            table.sort()
            self._unit_ranges = table
        if self._aranges is not None:
            offset = self._aranges.cu_offset_at_addr(address)
            if offset is not None:
                return self._unit(offset)
        for low, high, offset in self._unit_ranges:
            if low <= address < high:
                return self._unit(offset)
        return None

    def _function_scope_at(self, address: int) -> Scope | None:
        unit = self._unit_at(address)
        return None if unit is None else unit.function_at(address)

    def _scope_at(self, address: int, function: str | None = None) -> Scope:
        """The scope whose variables a probe at ``address`` sees.

        Without ``function``: the concrete function containing the address, as perf probe
        takes it for an address (its walk then also enters the lexical blocks and inlined
        copies there). With ``function``: the innermost instance of that function containing
        the address — an inlined copy, for a probe on one — or the concrete function when a
        symbol of that name is its entry (``malloc`` for ``__libc_malloc``).
        """
        tree = self._function_scope_at(address)
        if tree is None:
            raise FunctionNotFoundError(f"containing address {address:#x}", self.path)
        if function is None:
            return tree
        innermost = tree.innermost(address)
        scope: Scope | None = innermost
        while scope is not None:
            if scope.kind != "block" and function in (die_name(scope.die),
                                                      linkage_name(scope.die)):
                return scope
            scope = scope.parent
        if tree in self._functions.scopes_by_symbol(function):
            return tree
        raise FunctionNotFoundError(
            f"{function!r} at address {address:#x} (the code there belongs to "
            f"{innermost.function_scope.name})", self.path)

    # -- addresses --------------------------------------------------------------------------

    def file_offset(self, address: int) -> int:
        """The file offset of an address (where a uprobe at it is planted): through the
        ``PT_LOAD`` segment that holds it.

        Raises:
            DwarfError: No segment holds it.
        """
        for segment in self._segments:
            if segment.contains(address):
                return address - segment.vaddr + segment.offset
        raise DwarfError(f"{address:#x} is in no loadable segment of {self.path}")

    def address_of(self, file_offset: int) -> int | None:
        """The address of the code at a file offset (the inverse of :meth:`file_offset`, in
        the executable segments), or None when none holds it."""
        for segment in self._segments:
            if segment.executable and segment.offset <= file_offset < \
                    segment.offset + segment.memsz:
                return file_offset - segment.offset + segment.vaddr
        return None

    # -- functions --------------------------------------------------------------------------

    @_guarded
    def functions(self, name: str, inlined: bool = True) -> list[FunctionInstance]:
        """The instances of a function: its out-of-line body and (``inlined``) each inlined
        copy, as perf probe finds them for ``FUNC``.

        Finding inlined copies needs the name index of every unit, built once by a fast pass
        (libc: about a second); without ``inlined``, a function the symbol table names is
        found through its symbol at once.

        Args:
            name: The function's name or linkage name, or a glob (``mem*``).
            inlined: Include inlined copies.

        Returns:
            The instances, out-of-line ones first, each once.

        Raises:
            FunctionNotFoundError: No function of that name; close names are suggested.
        """
        with self._lock:
            if not inlined and not GLOB.search(name):
                scopes = self._functions.scopes_by_symbol(name)
                if scopes:
                    return [self._functions.instance(scope) for scope in scopes]
            scopes = [scope for scope in self._functions.instance_scopes(name)
                      if inlined or scope.kind == "function"]
            if not scopes:
                raise FunctionNotFoundError(
                    f"{name!r} out of line (it has inlined copies only; ask for those)", self.path)
            return [self._functions.instance(scope) for scope in scopes]

    @_guarded
    def function_at(self, address: int) -> FunctionInstance | None:
        """The out-of-line function whose code contains ``address`` (e.g. a symbol's value).

        Args:
            address: An ELF virtual address.

        Returns:
            Its instance, or None when no function with debug information contains it.
        """
        with self._lock:
            scope = self._function_scope_at(address)
            return None if scope is None else self._functions.instance(scope)

    @_guarded
    def inlined_at(self, address: int) -> list[FunctionInstance]:
        """The inlined copies whose code contains ``address``, outermost first."""
        with self._lock:
            tree = self._function_scope_at(address)
            if tree is None:
                return []
            result = []
            scope: Scope | None = tree.innermost(address)
            while scope is not None and scope.parent is not None:
                if scope.kind == "inlined":
                    result.append(self._functions.instance(scope))
                scope = scope.parent
            return result[::-1]

    # -- variables --------------------------------------------------------------------------

    @_guarded
    def variables_at(self, address: int, function: str | None = None) -> list[Variable]:
        """The parameters and locals in scope at an address, readable there or not.

        Args:
            address: The probe address (ELF virtual address).
            function: Whose variables: by default the concrete function containing the
                address, with those of blocks and inlined copies there (as perf probe lists
                them); the name of an inlined function for that copy's own. Pass
                :attr:`FunctionInstance.name` for a function probe and
                :attr:`LineAddress.function` for a line probe.

        Returns:
            Variables in declaration order (parameters first, as the debug information lists
            them); each says whether it can be read at ``address``, and if not, why and where
            it can.

        Raises:
            FunctionNotFoundError: No function with debug information contains the address.
        """
        with self._lock:
            return self._variables.variables_at(self._scope_at(address, function), address)

    @_guarded
    def params(self, address: int, function: str | None = None) -> list[Variable]:
        """What ``$params`` expands to: the readable parameters at ``address``."""
        return [v for v in self.variables_at(address, function)
                if v.available and v.kind == "parameter"]

    @_guarded
    def vars(self, address: int, function: str | None = None) -> list[Variable]:
        """What ``$vars`` expands to: the readable parameters and locals at ``address``."""
        return [v for v in self.variables_at(address, function) if v.available]

    @_guarded
    def compile(
        self,
        expression: str,
        address: int,
        retprobe: bool = False,
        cast: str | None = None,
        function: str | None = None,
    ) -> CompiledVariable:
        """Translate a variable expression into the kernel fetch-arg that reads it.

        Args:
            expression: ``a``, ``o->in->x``, ``req->path``, ``a[3]``, ``@counter``,
                ``@config.limit``, ``$retval``, ``$retval->len``.
            address: The probe address (ELF virtual address): a function's
                :attr:`FunctionInstance.probe_address`, a source line's address, or (for a
                return probe) the function's entry.
            retprobe: Whether this is a return probe: then only ``$retval`` and globals can
                be read.
            cast: The ``:TYPE`` given by the user, if any: ``string``/``ustring`` (read the
                string a ``char *`` points to, or a ``char[]``), ``s``/``u``/``x`` (change the
                signedness or show in hex, keeping the width), or any kernel type, used as is.
            function: Whose variables (see :meth:`variables_at`): the
                :attr:`FunctionInstance.name` of a function probe, the
                :attr:`LineAddress.function` of a line probe.

        Returns:
            The fetch-arg and the type to read it as.

        Raises:
            ExpressionSyntaxError: The expression does not parse.
            VariableNotFoundError: No such variable in scope (close names are suggested).
            NotAvailableError: The variable exists but cannot be read at ``address`` (the
                error names the ranges where it can).
            TypeMismatchError: The accessors do not fit the types, or the type cannot be read.
            FunctionNotFoundError: No function with debug information contains ``address``.
        """
        with self._lock:
            return self._compiler.compile(expression, address, retprobe, cast, function)

    # -- source lines -----------------------------------------------------------------------

    @_guarded
    def line_at(self, address: int) -> tuple[str | None, int] | None:
        """The source file and line whose code holds ``address``, or None when the line
        table does not say."""
        with self._lock:
            unit = self._unit_at(address)
            return None if unit is None else self._lines.line_at(unit, address)

    @_guarded
    def line_addresses(self, file: str, line: int) -> list[LineAddress]:
        """Where the code of a source line starts (``file:line`` probes).

        Args:
            file: The source file: a path, or its last components (``main.c``, ``src/main.c``).
            line: The line number.

        Returns:
            One entry per address, in address order. An address where the code of an earlier
            line starts as well is left out, as perf probe does ("This line is sharing the
            address with other lines").

        Raises:
            LineNotFoundError: No code for that line; the message names the closest lines
                that have code.
        """
        with self._lock:
            return self._lines.line_addresses(file, line)

    @_guarded
    def function_line(self, function: str, relative_line: int) -> list[LineAddress]:
        """``FUNC:N``: line N of a function counted from the line that declares it (perf
        probe's relative line: ``FUNC:0`` is the line with the function's name, ``FUNC:1``
        the next one), in every instance of the function.

        Args:
            function: The function's name.
            relative_line: N, 0 or more.

        Returns:
            The addresses of that line inside the function's instances.

        Raises:
            FunctionNotFoundError: No such function.
            LineNotFoundError: No code for that line inside the function.
        """
        with self._lock:
            return self._lines.function_line(function, relative_line)

    @_guarded
    def lines(self, function: str) -> list[SourceLine]:
        """The source lines of a function that have code, with where each starts (what
        ``perf probe -L`` marks as probe-able).

        Args:
            function: The function's name.

        Returns:
            Lines in order, each with its addresses across the function's instances (code of
            other functions inlined into it left out, and addresses where another line's code
            starts as well, which :meth:`line_addresses` refuses).

        Raises:
            FunctionNotFoundError: No such function.
        """
        with self._lock:
            return self._lines.lines(function)

