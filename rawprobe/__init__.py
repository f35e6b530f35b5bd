"""rawprobe: a user-space dynamic tracer (uprobes, uretprobes, USDT) built on precompiled BPF."""

from __future__ import annotations

from ._errors import (
    BpfObjectError,
    ClosedError,
    FetchArgError,
    FilterError,
    KernelFeatureError,
    LibbpfMissingError,
    NotElfError,
    PrivilegeError,
    ProbeSyntaxError,
    RawprobeError,
    SymbolNotFoundError,
    SysCallError,
    TargetNotFoundError,
    UsageError,
)
from ._version import __version__

__all__ = [
    "BpfObjectError",
    "ClosedError",
    "FetchArgError",
    "FilterError",
    "KernelFeatureError",
    "LibbpfMissingError",
    "NotElfError",
    "PrivilegeError",
    "ProbeSyntaxError",
    "RawprobeError",
    "SymbolNotFoundError",
    "SysCallError",
    "TargetNotFoundError",
    "UsageError",
    "__version__",
]
