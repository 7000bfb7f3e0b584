"""Worker processes started with ``os.fork``, without ``multiprocessing``.

Under the fork start method the backend forks its workers itself. Importing
``multiprocessing`` to do it (its context, ``reduction`` and through it ``socket``, ``util``
and through it ``subprocess``, ``popen_fork``) costs about 10 ms, which every run's start-up
would pay; a forked child needs none of it. ``Forked`` has the part of
``multiprocessing.Process`` that the collector uses: ``start``, ``pid``, ``sentinel``,
``is_alive``, ``exitcode``, ``join``, ``terminate``, ``kill``, ``close``.

In the child it does what ``multiprocessing`` does for a forked process (and gives SIGTERM its
default action back, see ``_settle``): standard input
becomes ``/dev/null``; when ``multiprocessing`` is loaded, the bookkeeping inherited from the
parent (its children, its finalizers) is reset and its after-fork hooks run, and its exit
hook runs at the end; threads the target left running are joined unless daemonic; an
exception is printed; the standard streams are flushed; and the child leaves with
``os._exit``, so the parent's ``atexit`` hooks never run in it. The exit code follows
``multiprocessing``'s: 0, a ``SystemExit``'s code, 1 after an exception, ``-signal`` when a
signal killed it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


def default_method() -> str:
    """The start method a run gets when none is given: multiprocessing's, when it is loaded
    (the user may have set one); else ``"fork"`` where that is the default (Linux before
    Python 3.14), without loading it."""
    if "multiprocessing" in sys.modules or sys.platform != "linux" or sys.version_info >= (3, 14):
        import multiprocessing

        method: str = multiprocessing.get_context(None).get_start_method()
        return method
    return "fork"


@final
class Forked:
    """One worker process, forked from this one (see the module's docstring)."""

    def __init__(self, target: Callable[..., object], args: tuple[Any, ...], name: str) -> None:
        self._target = target
        self._args = args
        self.name = name
        self.pid: int | None = None
        #: Readable (at end of file) once the child has exited: its end of this pipe closes.
        self.sentinel = -1
        self._exitcode: int | None = None
        self._closed = False

    def start(self) -> None:
        _flush_std_streams()  # else the child would write the parent's buffered output again
        read, write = os.pipe()
        # SIGTERM is held across the fork, until the child has its default action back: a
        # terminate() right after start() must not reach the handler the child inherited.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
                os.close(read)
                os._exit(_child(self._target, self._args, self.name, held))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        os.close(write)
        self.pid = pid
        self.sentinel = read

    @property
    def exitcode(self) -> int | None:
        """None while the child runs; then 0, its exit code, or ``-signal``."""
        if self._exitcode is None and self.pid is not None:
            self._wait(os.WNOHANG)
        return self._exitcode

    def is_alive(self) -> bool:
        return self.pid is not None and self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child to exit (``timeout``: at most that long, on its sentinel)."""
        if self.pid is None or self._exitcode is not None:
            return
        if timeout is not None:
            from .pipe import wait

            if not wait([self.sentinel], timeout):
                return
        self._wait(0)

    def _wait(self, flags: int) -> None:
        assert self.pid is not None
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped already (a SIGCHLD handler of the user's, say)
            self._exitcode = 0 if self._exitcode is None else self._exitcode
            return
        if pid == self.pid:
            self._exitcode = os.waitstatus_to_exitcode(status)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.pid is not None and self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def close(self) -> None:
        """Release the sentinel of a child that has exited."""
        if self.is_alive():
            msg = f"cannot close {self.name}: it is still running"
            raise ValueError(msg)
        if not self._closed and self.sentinel >= 0:
            os.close(self.sentinel)
        self._closed = True

    def __repr__(self) -> str:
        state = "started" if self.is_alive() else f"exitcode={self.exitcode}"
        return f"<Forked {self.name!r} pid={self.pid} {state}>"


def _child(
    target: Callable[..., object], args: tuple[Any, ...], name: str, mask: Iterable[int]
) -> int:
    """Run ``target(*args)`` in the new child; its exit code. ``mask``: the signal mask to
    restore once SIGTERM has its default action."""
    code = 1
    try:
        mp_util = _settle(name, mask)
        try:
            target(*args)
            code = 0
        finally:
            if mp_util is not None:
                mp_util._exit_function()  # as multiprocessing's own bootstrap does
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except BaseException:
        import traceback

        sys.stderr.write(f"Process {name}:\n")
        traceback.print_exc()
        code = 1
    finally:
        shutdown: Callable[[], object] | None = getattr(threading, "_shutdown", None)
        if shutdown is not None:  # joins the threads left running that are not daemonic
            shutdown()
        _flush_std_streams()
    return code


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


def _settle(name: str, mask: Iterable[int]) -> Any:
    """What multiprocessing's bootstrap does in a forked child; its ``util`` when loaded.

    And one thing more: SIGTERM gets its default action back (then ``mask`` is restored). The
    caller stops a worker with it; a handler the caller's process had (Ray's dumps a
    symbolized stack, 0.1-0.3 s, then aborts) is the caller's, not the worker's.
    """
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if sys.stdin is not None:
        try:
            sys.stdin.close()
            sys.stdin = open(os.devnull)  # noqa: SIM115 - as multiprocessing does
        except (OSError, ValueError):
            pass
    mp_process = sys.modules.get("multiprocessing.process")
    if mp_process is not None:
        mp_process.__dict__["_children"] = set()  # the parent's children are not ours
        with contextlib.suppress(Exception):  # current_process().name, as for its Process
            mp_process.current_process().name = name
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util._finalizer_registry.clear()
        mp_util._run_after_forkers()
    return mp_util
