"""Shared fixtures: the backends every conformance test runs on, and the leak check."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

# The backends that must give the inline backend's results.
BACKENDS = ["inline"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    name: str = request.param
    return name


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


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
