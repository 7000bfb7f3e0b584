"""The caller's signals during a run: SIGTERM and Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from .wire import INF

if TYPE_CHECKING:
    from .collector import Run

_SECOND_PRESS: Final = 1.0  # a Ctrl-C this soon after the one that stopped a run is held


ACTIVE: Final[dict[str, Run]] = {}  # the runs in progress in this process, by prefix


_PREVIOUS: Final[list[Any]] = []  # the SIGTERM handler ours replaced, while ours is installed


_OWNER: Final[list[int]] = []  # the pid whose runs ACTIVE lists (a forked child inherits it)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_sigterm(signum: int, frame: object) -> None:
    # A child forked a moment ago may run this before _after_fork_in_child: not its runs.
    if os.getpid() in _OWNER:
        for run in list(ACTIVE.values()):
            run.kill_now()
    signal.signal(signal.SIGTERM, _PREVIOUS[0] if _PREVIOUS else signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # the default: die of it; a user's handler: call it


# A fork while ours is installed: the child must not keep it (it has no runs of its own), and
# a SIGTERM that reaches the child before it has reset it must not be lost (CPython clears the
# child's pending signals after fork: `terminate()` right after `start()` would go unheard).
# So SIGTERM is blocked across the fork, and unblocked in the child once the handler is reset.
_FORKING = threading.local()  # .blocked: this thread blocked SIGTERM for a fork


def _before_fork() -> None:
    _FORKING.blocked = signal.getsignal(signal.SIGTERM) is _on_sigterm
    if _FORKING.blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _after_fork_in_parent() -> None:
    if getattr(_FORKING, "blocked", False):
        _FORKING.blocked = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _after_fork_in_child() -> None:
    """A forked child (a worker, or the user's own process) is not running our runs."""
    ACTIVE.clear()
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _PREVIOUS[0] if _PREVIOUS else signal.SIG_DFL)
    _after_fork_in_parent()  # unblock: a SIGTERM held meanwhile now takes its course


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


_RAISED_AT = [-INF]  # when _on_sigint last raised KeyboardInterrupt


def _on_sigint(signum: int, frame: object) -> None:
    """Python's Ctrl-C while runs are on, except that a second one within a second of the
    first is dropped: it would land in the cleanup the first one set off (two quick presses,
    a terminal that sends two) and print a second traceback, chained to the first."""
    now = time.monotonic()
    if now - _RAISED_AT[0] < _SECOND_PRESS:
        return
    _RAISED_AT[0] = now
    raise KeyboardInterrupt


class Signals:
    """One run's share of the signal handling above."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.sigint: Any = None  # SIGINT's handler before ours, to put back
        self.interrupted = False

    def start(self) -> None:
        _OWNER[:] = [os.getpid()]
        ACTIVE[self.run.prefix] = self.run
        if _in_main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            _PREVIOUS[:] = [signal.SIG_DFL]
            signal.signal(signal.SIGTERM, _on_sigterm)
        if _in_main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)

    def hold(self) -> None:
        """Hold Ctrl-C for the teardown (in the main thread, where Python handles it)."""
        if not _in_main_thread():  # a stream closed from another thread, say
            return
        handler = signal.getsignal(signal.SIGINT)
        if handler is None:  # installed from C: Python could not put it back
            return
        self.sigint = handler
        signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum: int, frame: object) -> None:
        if time.monotonic() - _RAISED_AT[0] < _SECOND_PRESS:
            return  # the second press of a double Ctrl-C: the first is on its way
        self.interrupted = True

    def release(self, in_flight: BaseException | None) -> None:
        """After the teardown: put the handlers back, then raise a held Ctrl-C."""
        ACTIVE.pop(self.run.prefix, None)
        if self.sigint is not None:
            signal.signal(signal.SIGINT, self.sigint)
        if not ACTIVE and _in_main_thread() and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, _PREVIOUS[0] if _PREVIOUS else signal.SIG_DFL)
        if not ACTIVE and _in_main_thread() and signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.interrupted and not isinstance(in_flight, KeyboardInterrupt):
            raise KeyboardInterrupt
