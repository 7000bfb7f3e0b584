"""Shared fixtures: the backends every conformance test runs on, and the leak check."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, cast

import psutil
import pytest

from olympipe_typed import Pipeline, run_all

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FunctionType

    from olympipe_typed._pipeline import Backend

# The backends that must give the inline backend's results.
BACKENDS = ["inline", "thread", "process"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    name: Backend = request.param
    return name


# multiprocessing's own helpers live as long as the test session, by design.
_INFRASTRUCTURE = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def _is_infrastructure(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return any(name in cmdline for name in _INFRASTRUCTURE)


@pytest.fixture
def default_backend(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Make ``backend`` the default of the run entry points, for calls that take no backend
    (``for x in pipeline``, olympipe-style methods used without the keyword)."""
    entry_points = [Pipeline.__dict__[name] for name in ("run", "stream", "wait_for_completion")]
    for fn in [*entry_points, cast("FunctionType", run_all)]:
        defaults = fn.__kwdefaults__
        assert defaults is not None
        assert "backend" in defaults
        monkeypatch.setitem(defaults, "backend", backend)
    return backend


def _children() -> set[int]:
    kids = psutil.Process(os.getpid()).children(recursive=True)
    return {p.pid for p in kids if not _is_infrastructure(p)}


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Fail a test that leaves a child process of this test process alive."""
    before = _children()
    yield
    deadline = time.monotonic() + 5.0
    left = _children() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid for pid in _children() - before if psutil.pid_exists(pid)}
    assert not left, f"child processes left behind: {sorted(left)}"
