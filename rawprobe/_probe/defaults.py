"""Defaults shared by the library and the command line (kept apart so that building the
command line's parser imports nothing heavy)."""

from __future__ import annotations

__all__ = ["DEFAULT_RING_SIZE", "DEFAULT_STRING_SIZE", "MAX_STRING_SIZE"]

DEFAULT_RING_SIZE = 8 << 20  # bytes of BPF ring buffer (perf buffers, for tracefs, in all)
DEFAULT_STRING_SIZE = 256  # bytes kept per string, NUL included
MAX_STRING_SIZE = 4096  # the kernel's MAX_STRING_SIZE (PATH_MAX) for probe strings
