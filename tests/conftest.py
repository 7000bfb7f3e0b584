"""Shared fixtures: the backends every conformance test runs on, a local Ray, and the leak check."""

from __future__ import annotations

import multiprocessing
import os
import sys
import sysconfig
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psutil
import pytest
from processes import workers

import olympipe_typed
from olympipe_typed import Pipeline, run_all

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FunctionType, ModuleType

    from olympipe_typed._pipeline import Backend

# The backends that must give the inline backend's results; `-m "not ray"` leaves Ray out.
# $OLYMPIPE_TYPED_TEST_BACKENDS narrows them: tools/wheeltest.py reruns the conformance tests
# under forkserver and spawn for the process backend alone (the others start no process).
BACKENDS = [
    b if b != "ray" else pytest.param("ray", marks=pytest.mark.ray)
    for b in os.environ.get("OLYMPIPE_TYPED_TEST_BACKENDS", "inline,thread,process,ray").split(",")
]


def pytest_report_header() -> list[str]:
    """Say which package the tests import and which start method is the default."""
    where = Path(olympipe_typed.__file__).parent
    return [
        f"olympipe_typed {olympipe_typed.__version__} from {where}",
        f"default start method: {multiprocessing.get_start_method()}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs Ray with ``ray``: test_ray.py, tests using its fixtures, and
    tests run with ``backend="ray"``. Under another default start method, leave out the tests
    that name their own (they run once, each method in turn, with the default one)."""
    own_method: list[pytest.Item] = []
    for item in items:
        fixtures: list[str] = getattr(item, "fixturenames", [])
        callspec = getattr(item, "callspec", None)
        params: dict[str, object] = callspec.params if callspec is not None else {}
        if (
            item.path.name == "test_ray.py"
            or {"ray_local", "ray_session"} & set(fixtures)
            or params.get("backend") == "ray"
        ):
            item.add_marker(pytest.mark.ray)
        if {"start_method", "method"} & params.keys():
            own_method.append(item)
    if own_method and os.environ.get("OLYMPIPE_TYPED_TEST_START_METHOD"):
        config.hook.pytest_deselected(items=own_method)
        items[:] = [item for item in items if item not in own_method]


def pytest_sessionstart() -> None:
    """Under tools/wheeltest.py, refuse to test anything but the installed wheel, and check that
    the start method the run asked for is the default one."""
    if os.environ.get("OLYMPIPE_TYPED_TEST_INSTALLED"):
        where = Path(olympipe_typed.__file__).resolve().parent
        site = Path(sysconfig.get_paths()["purelib"]).resolve()
        if where.parent != site:
            msg = f"testing {where}, not the wheel installed in {site}"
            raise pytest.UsageError(msg)
    wanted = os.environ.get("OLYMPIPE_TYPED_TEST_START_METHOD")
    if wanted and multiprocessing.get_start_method() != wanted:
        msg = (
            f"asked for {wanted} by default, got {multiprocessing.get_start_method()} ({sys.path})"
        )
        raise pytest.UsageError(msg)


# Conformance tests about what Ray does not tell or does differently, with the reason.
RAY_DIFFERENCES = {
    "test_worker_died_names_stage_and_exit_code": "Ray reports no exit code for an actor's process",
    "test_worker_died_names_signal": "Ray reports no signal for an actor's process",
    "test_pipeline_debug_prints_items_unchanged": "Ray forwards an actor's stdout later, if at all",
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn; "ray" on the session's local Ray."""
    name: Backend = request.param
    if name == "ray":
        reason = RAY_DIFFERENCES.get(request.function.__name__)
        if reason is not None:
            pytest.skip(reason)
        request.getfixturevalue("ray_local")
    return name


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """Ray, started once for the session (a few seconds) when a test needs it, then stopped."""
    ray: Any = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_local(ray_session: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A local Ray for backend="ray" to join: 2 CPUs, no dashboard; started again if a test
    shut it down. Fails the test if a stage actor is still alive after it.

    The conformance modules' stages travel by value (test_ray's own, by reference): an actor
    then need not import the test module, and pytest with it (~0.2 s of CPU per actor).
    """
    if not ray_session.is_initialized():
        ray_session.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    module: ModuleType = request.node.module
    if module.__name__ != "test_ray":
        ray_session.cloudpickle.register_pickle_by_value(module)
    yield ray_session
    left = _stage_actors(wait=5.0)
    assert not left, f"stage actors left alive: {left}"


@pytest.fixture
def stage_actors() -> Callable[..., list[int]]:
    """The function that lists the stage actors' pids (``wait=`` seconds for them to go)."""
    return _stage_actors


def _stage_actors(wait: float = 0.0) -> list[int]:
    """Pids of this session's stage actors ("ray::OlympipeStage", under our Ray's raylets),
    after waiting up to ``wait`` seconds for them to go. An actor may run in a worker that
    Ray started before the test, so no_child_left alone would not see it stay."""
    deadline = time.monotonic() + wait
    while True:
        found: list[int] = []
        for proc in psutil.Process(os.getpid()).children(recursive=True):
            try:
                title = proc.cmdline()[:1]
            except psutil.Error:
                continue
            if title and title[0].startswith("ray::OlympipeStage"):
                found.append(proc.pid)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


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
    return {p.pid for p in workers()}


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
