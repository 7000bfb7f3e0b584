"""Fork workers without multiprocessing (``backends/process/forked.py``): exit codes, waits,
signals, what the child inherits, and a run under fork that never loads multiprocessing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, NoReturn

import pytest

from olympipe_typed.backends.process.forked import Forked, default_method
from olympipe_typed.backends.process.pipe import pipe, wait

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only"),
]


def _nothing() -> None:
    pass


def _exit_with(code: object) -> NoReturn:
    raise SystemExit(code)


def _raise() -> NoReturn:
    msg = "boom in the child"
    raise ValueError(msg)


def _os_exit(code: int) -> NoReturn:
    os._exit(code)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def started(target: Callable[..., object], *args: object) -> Forked:
    child = Forked(target, args, "olympipe:test:0")
    child.start()
    return child


@pytest.mark.parametrize(
    ("target", "args", "code"),
    [
        (_nothing, (), 0),
        (_exit_with, (None,), 0),
        (_exit_with, (3,), 3),
        (_exit_with, ("a message",), 1),
        (_raise, (), 1),
        (_os_exit, (7,), 7),
    ],
    ids=["returns", "exit-none", "exit-3", "exit-text", "raises", "os-exit"],
)
def test_exit_codes_follow_multiprocessing(
    target: Callable[..., object], args: tuple[object, ...], code: int
) -> None:
    child = started(target, *args)
    child.join()
    assert child.exitcode == code
    assert not child.is_alive()
    child.close()


@pytest.mark.parametrize(("how", "signum"), [("terminate", 15), ("kill", 9)])
def test_a_signal_gives_minus_its_number(how: str, signum: int) -> None:
    child = started(_sleep, 30.0)
    assert child.is_alive()  # and so its exitcode is None
    getattr(child, how)()
    child.join(5.0)
    assert child.exitcode == -signum
    child.close()


def test_sigterm_kills_even_when_the_caller_handles_it() -> None:
    """A SIGTERM handler of the caller's (Ray installs one) does not run in the worker, even
    for a SIGTERM sent the moment it starts."""
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        child = started(_sleep, 30.0)
        child.terminate()  # at once: SIGTERM is held in the child until its handler is reset
        child.join(5.0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert child.exitcode == -signal.SIGTERM
    assert calls == []


def test_join_with_a_timeout_returns_while_the_child_runs_and_the_sentinel_says_when_it_ends() -> (
    None
):
    child = started(_sleep, 0.5)
    began = time.monotonic()
    child.join(0.05)
    assert child.is_alive()
    assert time.monotonic() - began < 0.4
    assert wait([child.sentinel], 10.0) == [child.sentinel]
    child.join()
    assert child.exitcode == 0
    child.close()


def test_a_running_child_cannot_be_closed() -> None:
    child = started(_sleep, 30.0)
    try:
        with pytest.raises(ValueError, match="still running"):
            child.close()
    finally:
        child.kill()
        child.join()
    child.close()


def _report_stdin_and_threads(end: object) -> None:
    from olympipe_typed.backends.process.pipe import PipeEnd

    assert isinstance(end, PipeEnd)
    end.send_bytes(f"{sys.stdin.read()!r} {threading.active_count()}".encode())


def test_the_child_reads_dev_null_and_runs_none_of_the_parents_threads() -> None:
    receive, send = pipe()
    idle = threading.Event()
    thread = threading.Thread(target=idle.wait)
    thread.start()
    try:
        child = started(_report_stdin_and_threads, send)
        send.close()
        assert receive.poll(10.0)
        assert receive.recv_bytes() == b"'' 1"
        child.join()
        assert child.exitcode == 0
        child.close()
    finally:
        idle.set()
        thread.join()
        receive.close()


def _spawn_a_non_daemon_thread(end: object) -> None:
    from olympipe_typed.backends.process.pipe import PipeEnd

    assert isinstance(end, PipeEnd)

    def later() -> None:
        time.sleep(0.3)
        end.send_bytes(b"the thread finished")

    threading.Thread(target=later).start()


def test_the_child_waits_for_the_threads_it_started_unless_daemonic() -> None:
    receive, send = pipe()
    child = started(_spawn_a_non_daemon_thread, send)
    send.close()
    child.join()
    assert child.exitcode == 0
    assert receive.poll(0)
    assert receive.recv_bytes() == b"the thread finished"
    receive.close()
    child.close()


def test_the_start_method_of_a_run_that_names_none() -> None:
    """multiprocessing's when it is loaded (here: pytest and the tests load it)."""
    import multiprocessing

    assert default_method() == multiprocessing.get_context(None).get_start_method()


def test_a_run_under_fork_never_loads_multiprocessing() -> None:
    """The default start method on Linux before Python 3.14, with multiprocessing not loaded:
    a whole run, a stage with two workers and a stream left early, without importing it (about
    10 ms of start-up), and the workers' exit codes are still checked (WorkerDied)."""
    code = """
import itertools, os, sys
from olympipe_typed import WorkerDied, source, stage
def f(x: int) -> int:
    return x + 1
def die(x: int) -> int:
    os._exit(3)
s = stage(f)
assert (source(range(50)) >> s >> s.options(workers=2) >> s).run() == list(range(3, 53))
for x in (source(itertools.count()) >> s).stream():
    if x > 5:
        break
try:
    (source(range(5)) >> stage(die)).run()
except WorkerDied as exc:
    assert exc.exitcode == 3, exc
else:
    raise AssertionError("no WorkerDied")
print(sorted(name for name in sys.modules if name.startswith("multiprocessing")))
"""
    if sys.platform != "linux" or sys.version_info >= (3, 14):
        pytest.skip("fork is the default start method only on Linux before Python 3.14")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stderr
