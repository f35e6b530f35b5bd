"""rawprobe's precompiled BPF object: open, size its maps, load, and hand out programs and maps."""

from __future__ import annotations

import ctypes
import errno
import os
import weakref
from functools import lru_cache

from .._errors import BpfObjectError, ClosedError, PrivilegeError, SysCallError
from .arch import ARCH
from .libbpf import Libbpf, capture_log, libbpf

__all__ = ["BpfMap", "BpfObject", "object_bytes"]



@lru_cache(maxsize=4)
def object_bytes(name: str = "rawprobe") -> bytes:
    """The bytes of ``bpfobj/<name>.<arch>.bpf.o``, from the installed package or a checkout.

    Raises:
        BpfObjectError: No object was built for this architecture.
    """
    arch = ARCH.kernel_name
    file_name = f"{name}.{arch}.bpf.o"
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for directory in (package, os.path.dirname(package)):
        path = os.path.join(directory, "bpfobj", file_name)
        if os.path.isfile(path):
            with open(path, "rb") as file:
                return file.read()
    raise BpfObjectError(
        f"no BPF object {file_name} in the rawprobe package: this build of rawprobe has no "
        f"programs for {ARCH.machine} (rebuild with 'make -C clang')"
    )


class BpfMap:
    """A map of a :class:`BpfObject`; valid while the object is open."""

    def __init__(self, owner: BpfObject, pointer: int, name: str) -> None:
        self._owner = owner
        self._pointer = pointer
        self.name = name

    @property
    def fd(self) -> int:
        return int(self._owner.lib.map_fd(self._pointer))

    @property
    def max_entries(self) -> int:
        return int(self._owner.lib.map_max_entries(self._pointer))

    @property
    def value_size(self) -> int:
        return int(self._owner.lib.map_value_size(self._pointer))

    def set_max_entries(self, count: int) -> None:
        """Size the map; only before :meth:`BpfObject.load`."""
        self._owner.lib.map_set_max_entries(self._pointer, count)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        key_buffer = ctypes.create_string_buffer(key, len(key))
        value_buffer = ctypes.create_string_buffer(value, len(value))
        try:
            self._owner.lib.map_update_elem(
                self._pointer, key_buffer, len(key), value_buffer, len(value), flags
            )
        except SysCallError as error:
            raise SysCallError(error.errno or 0, f"updating BPF map {self.name}") from None

    def lookup(self, key: bytes, value_size: int) -> bytes:
        """The value at ``key`` (per-CPU maps: ``value_size`` is the size times the CPUs)."""
        key_buffer = ctypes.create_string_buffer(key, len(key))
        value_buffer = ctypes.create_string_buffer(value_size)
        try:
            self._owner.lib.map_lookup_elem(
                self._pointer, key_buffer, len(key), value_buffer, value_size, 0
            )
        except SysCallError as error:
            raise SysCallError(error.errno or 0, f"reading BPF map {self.name}") from None
        return value_buffer.raw


    def keys(self, key_size: int) -> list[bytes]:
        """Every key of a hash map (a snapshot: keys may come and go meanwhile)."""
        lib = self._owner.lib
        fd = self.fd
        keys: list[bytes] = []
        current = None
        next_key = ctypes.create_string_buffer(key_size)
        while True:
            result = lib.bpf_map_get_next_key(fd, current, next_key)
            if result < 0:
                if -result == errno.ENOENT or ctypes.get_errno() == errno.ENOENT:
                    return keys
                raise SysCallError(-result, f"listing the keys of BPF map {self.name}")
            keys.append(next_key.raw)
            current = ctypes.create_string_buffer(next_key.raw, key_size)

    def get(self, key: bytes, value_size: int) -> bytes | None:
        """The value at ``key``, or None when there is none."""
        value = ctypes.create_string_buffer(value_size)
        result = self._owner.lib.bpf_map_lookup_elem(self.fd, key, value)
        if result < 0:
            return None
        return value.raw

    def take(self, key: bytes, value_size: int) -> bytes | None:
        """The value at ``key``, removed in the same step (a hash map, Linux 5.14+): what the
        programs add meanwhile goes to a new entry, never lost between a read and a delete.
        None when there is none."""
        value = ctypes.create_string_buffer(value_size)
        result = self._owner.lib.bpf_map_lookup_and_delete_elem(self.fd, key, value)
        if result < 0:
            return None
        return value.raw

    def delete(self, key: bytes) -> None:
        """Remove ``key`` (no error if it is already gone)."""
        self._owner.lib.bpf_map_delete_elem(self.fd, key)


class BpfObject:
    """An opened (and, after :meth:`load`, loaded) BPF object.

    Owns the libbpf ``bpf_object``; :meth:`close` (or garbage collection) frees it and with it
    every program and map it loaded.
    """

    def __init__(self, data: bytes, name: str = "rawprobe") -> None:
        self.lib: Libbpf = libbpf()
        # libbpf reads the buffer while opening and copies what it keeps.
        self._data = ctypes.create_string_buffer(data, len(data))
        with capture_log() as lines:
            try:
                pointer = self.lib.object_open_mem(self._data, len(data), None)
            except SysCallError as error:
                raise BpfObjectError(
                    f"libbpf cannot open the BPF object {name}: {error}", "\n".join(lines)
                ) from None
        self._pointer: int | None = int(pointer)
        self.name = name
        self._finalizer = weakref.finalize(self, self.lib.object_close, pointer)

    @property
    def pointer(self) -> int:
        if self._pointer is None:
            raise ClosedError(f"BPF object {self.name} is closed")
        return self._pointer

    def map(self, name: str) -> BpfMap:
        try:
            pointer = self.lib.object_find_map_by_name(self.pointer, name.encode())
        except SysCallError:
            raise BpfObjectError(f"BPF object {self.name} has no map {name!r}") from None
        return BpfMap(self, int(pointer), name)

    def rodata(self) -> ctypes.Array[ctypes.c_char]:
        """The object's ``.rodata`` (its ``const volatile`` globals), writable until load."""
        pointer = self.map(".rodata")._pointer
        size = ctypes.c_size_t()
        address = self.lib.map_initial_value(pointer, ctypes.byref(size))
        return (ctypes.c_char * size.value).from_address(address)

    def set_rodata(self, data: bytes) -> None:
        """Write ``data`` at the start of the object's ``.rodata`` (before :meth:`load`)."""
        rodata = self.rodata()
        if len(data) > len(rodata):
            raise ValueError(f".rodata holds {len(rodata)} bytes, not {len(data)}")
        ctypes.memmove(rodata, data, len(data))

    def program(self, name: str) -> int:
        """The libbpf ``bpf_program`` pointer of the program named ``name``."""
        try:
            return int(self.lib.object_find_program_by_name(self.pointer, name.encode()))
        except SysCallError:
            raise BpfObjectError(f"BPF object {self.name} has no program {name!r}") from None

    def load(self) -> None:
        """Load every program and create every map in the kernel.

        Raises:
            PrivilegeError: The kernel refused for lack of privilege (names the capabilities).
            BpfObjectError: The verifier rejected a program (its log is attached).
        """
        with capture_log() as lines:
            try:
                self.lib.object_load(self.pointer)
            except SysCallError as error:
                if error.errno == errno.EMFILE:
                    raise  # out of descriptors: the caller names the limit
                if error.errno == errno.EPERM:
                    raise PrivilegeError(
                        "loading BPF programs needs root or CAP_BPF and CAP_PERFMON "
                        "(CAP_SYS_ADMIN on kernels before 5.8): run rawprobe as root",
                        capability="CAP_BPF",
                    ) from None
                raise BpfObjectError(
                    f"the kernel refused rawprobe's BPF object: {error}", "\n".join(lines[-60:])
                ) from None

    def close(self) -> None:
        if self._pointer is not None:
            self._pointer = None
            self._finalizer()

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


