"""rawprobe's log messages, with :mod:`logging` imported only when one is written.

``logging`` brings ``traceback``, ``linecache``, ``tokenize``, ``string`` and ``threading`` with
it: milliseconds of start-up that a run which logs nothing should not pay. Messages go to the
standard loggers (``rawprobe``, ``rawprobe.libbpf``), so a program embedding rawprobe configures
them as it configures any other; the command line hands its set-up to :func:`configure`, which
applies it when the first message is written.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from logging import Logger

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "configure", "enabled", "info", "log", "warning"]

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

# The command line's set-up, applied with the first message: (format, levels by logger name).
_pending: tuple[str, dict[str, int]] | None = None


def configure(format: str, levels: dict[str, int]) -> None:
    """Set up logging as the command line wants it, now if :mod:`logging` is already
    imported, else when the first message is written.

    Args:
        format: The handler's format (``rawprobe: %(message)s``).
        levels: The level of each logger, by name (``""`` is the root logger).
    """
    global _pending
    _pending = (format, dict(levels))
    if "logging" in sys.modules:
        _logger("")


def _logger(name: str) -> Logger:
    global _pending
    import logging

    if _pending is not None:
        format, levels, _pending = *_pending, None
        logging.basicConfig(level=levels.get("", WARNING), format=format)
        for logger_name, level in levels.items():
            if logger_name:
                logging.getLogger(logger_name).setLevel(level)
    return logging.getLogger(name)


def enabled(level: int, name: str = "rawprobe") -> bool:
    """Whether a message of ``level`` to logger ``name`` would be written."""
    if "logging" in sys.modules:
        return _logger(name).isEnabledFor(level)
    if _pending is None:
        return level >= WARNING  # logging's default: the root logger at WARNING
    levels = _pending[1]
    while name not in levels and name:
        name = name.rpartition(".")[0]
    return level >= levels.get(name, WARNING)


def log(level: int, message: str, *args: object, name: str = "rawprobe") -> None:
    """Write ``message % args`` at ``level`` to logger ``name`` (if that level is enabled)."""
    if enabled(level, name):
        _logger(name).log(level, message, *args)


def info(message: str, *args: object) -> None:
    log(INFO, message, *args)


def warning(message: str, *args: object) -> None:
    log(WARNING, message, *args)
