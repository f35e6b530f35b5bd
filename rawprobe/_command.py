"""The processes a run follows: the command a tracer starts (``attach -- COMMAND``), held at the
door until the probes are in place and then run exactly as the user's shell would have run it;
or the ``-p`` processes, watched until they have all exited.

The command must not see rawprobe: Python ignores SIGPIPE and SIGXFSZ (an ignored signal stays
ignored across exec), rawprobe raises its own descriptor limit for its perf events, and its
handlers for Ctrl-C and SIGTERM are its own. The child puts all of that back before exec. It
also asks for SIGTERM when rawprobe dies (PR_SET_PDEATHSIG), so a rawprobe killed with SIGKILL
does not leave the command running untraced.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import time
from collections.abc import Sequence

from ._errors import TargetNotFoundError, UsageError
from ._sys.libc import PR_SET_PDEATHSIG, PTRACE_DETACH, PTRACE_TRACEME, prctl, ptrace
from ._sys.limits import original_descriptor_limit

__all__ = ["Command", "Processes"]

# Signals Python sets to SIG_IGN at start-up (Python/pylifecycle.c, signal_install_handlers):
# the command gets their default action back, as subprocess's restore_signals does.
_PYTHON_IGNORES = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ")
                        if hasattr(signal, name))
# The signal mask rawprobe was started with (Python does not change it).
_ORIGINAL_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, ())


class Command:
    """A command started by the tracer, held at the door until the probes are in place.

    Args:
        argv: The command and its arguments (looked up in ``$PATH``).

    Raises:
        UsageError: No command.
        TargetNotFoundError: No such command.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        if not argv:
            raise UsageError("no command given after --")
        import shutil  # only a run that starts a command needs it

        if shutil.which(argv[0]) is None:
            raise TargetNotFoundError(f"{argv[0]}: command not found")
        self.argv = list(argv)
        self.pid = 0
        self.pidfd = -1
        self.status: int | None = None
        self._gate_write = -1
        self._stopped_at_exec = False

    def spawn(self, stop_at_exec: bool = False) -> None:
        """Fork the child; it waits for :meth:`release` before it execs the command.

        Args:
            stop_at_exec: The command stops right after its exec, before it runs an
                instruction of its own (the child asks to be traced, PTRACE_TRACEME, and a
                traced process stops at exec), until :meth:`resume`: its probes can then be
                planted on the command itself and nothing rawprobe's child does before the
                exec is traced.
        """
        gate_read, gate_write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: put the user's environment back, wait for the go, exec
            try:
                os.close(gate_write)
                _restore_environment(parent)
                if stop_at_exec:
                    ptrace(PTRACE_TRACEME, 0, None, None)
                if not os.read(gate_read, 1):
                    os._exit(127)  # rawprobe ended before releasing the command
                os.close(gate_read)
                os.execvp(self.argv[0], self.argv)
            except BaseException:
                os._exit(127)
        os.close(gate_read)
        self.pid = pid
        self._gate_write = gate_write
        self._stopped_at_exec = stop_at_exec
        self.pidfd = os.pidfd_open(pid)

    def wait_exec(self) -> bool:
        """After :meth:`release` of a command spawned to stop at its exec: wait for that stop.

        Returns:
            True once it is stopped there; False when it ended instead (its exec failed).
        """
        _pid, status = os.waitpid(self.pid, 0)
        if os.WIFSTOPPED(status):
            return True
        self.status = os.waitstatus_to_exitcode(status)
        self._stopped_at_exec = False
        return False

    def resume(self) -> None:
        """Let a command stopped at its exec run (it is no longer traced)."""
        if self._stopped_at_exec:
            self._stopped_at_exec = False
            # data 0: the SIGTRAP of the exec is not delivered.
            ptrace(PTRACE_DETACH, self.pid, None, None)

    def release(self) -> None:
        """Let the child exec the command."""
        if self._gate_write >= 0:
            os.write(self._gate_write, b"x")
            os.close(self._gate_write)
            self._gate_write = -1

    def poll(self) -> bool:
        """Whether the command has ended (reaping it)."""
        if self.status is None and self.pid:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def close(self) -> None:
        """Never leave the child behind: one that never ran (or is still stopped at its exec) is
        killed, one still running is sent SIGTERM (and SIGKILL if it has not ended within a
        second)."""
        if self._gate_write >= 0 or self._stopped_at_exec:
            os.kill(self.pid, signal.SIGKILL)
            if self._gate_write >= 0:
                os.close(self._gate_write)
            self._gate_write = -1
            self._stopped_at_exec = False
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        elif self.pid and not self.poll():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 1.0
            while not self.poll() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not self.poll():
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                self.status = -signal.SIGKILL
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def _restore_environment(parent: int) -> None:
    """In the forked child, before exec: what the user's shell would have given the command."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, *_PYTHON_IGNORES):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, _ORIGINAL_MASK)
    resource.setrlimit(resource.RLIMIT_NOFILE, original_descriptor_limit())
    # SIGTERM when rawprobe goes, however it goes; if it is already gone, do not start.
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(127)


class Processes:
    """The ``-p`` processes of a run, watched through pidfds (readable once a process exits,
    zombie or not)."""

    def __init__(self, pids: Sequence[int]) -> None:
        for pid in pids:
            if not os.path.exists(f"/proc/{pid}"):
                raise TargetNotFoundError(f"no process with pid {pid}")
        self.pids = tuple(pids)
        self._pidfds: list[int] = []

    def open(self) -> list[int]:
        """One pidfd per process, for the run's wait to watch."""
        for pid in self.pids:
            self._pidfds.append(os.pidfd_open(pid))
        return list(self._pidfds)

    def finished(self) -> bool:
        """Whether every process has exited (never, without any)."""
        if not self._pidfds:
            return False
        poller = select.poll()
        for fd in self._pidfds:
            poller.register(fd, select.POLLIN)
        return len(poller.poll(0)) == len(self._pidfds)

    def close(self) -> None:
        fds, self._pidfds = self._pidfds, []
        for fd in fds:
            os.close(fd)
