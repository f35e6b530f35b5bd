"""Every foreign call rawprobe makes: libc, perf_event_open(2), bpf(2) and libbpf.

Nothing outside this package imports ctypes. Each foreign function is declared once through
:func:`rawprobe._sys._ffi.declare`, which sets ``argtypes``, ``restype`` and an ``errcheck`` that
turns a failure into :class:`rawprobe.SysCallError` carrying the errno and what was being done.
"""
