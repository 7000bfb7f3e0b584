"""Conformance tests for errors: the exception classes and what each failure raises in the caller."""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, cast

import pytest

from olympipe_typed import (
    Pipeline,
    PipelineError,
    SourceError,
    StageError,
    StageTypeError,
    WiringError,
    WorkerDied,
    source,
    stage,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(60)


# Backends whose workers live in the caller's process: a worker cannot die without the caller.
IN_PROCESS = ("inline", "thread")


class CustomError(Exception):
    """An exception type of the user's own, to check that its type survives."""


@stage
def parse(s: str) -> int:
    """Parse an int."""
    return int(s)


@stage
def double(x: int) -> int:
    """Double an int."""
    return x * 2


@stage
def plus_two(x: int) -> int:
    """Add two to an int."""
    return x + 2


@stage
def half(x: float) -> float:
    """Half of a number."""
    return x / 2


@stage
def lies(x: int) -> str:
    """Claims to return str but returns the int unchanged."""
    result: Any = x
    return cast("str", result)


def _fail_on_three(x: int) -> int:
    """Raise CustomError for 3, return other items unchanged."""
    if x == 3:
        msg = "three is not allowed"
        raise CustomError(msg)
    return x


# -- the exception classes --

ERRORS: list[PipelineError] = [
    PipelineError("boom"),
    StageError("parse", "'x2'", "ValueError: invalid literal"),
    WorkerDied("resize", 1234, 3),
    WorkerDied("resize", 1234, -9),
    SourceError("source 'frames' raised OSError: camera unplugged"),
    StageTypeError("square", "input", "int", "str", "'a'"),
    WiringError("stage 'square' produces int but stage 'upper' expects str"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: f"{type(e).__name__}{e.args}")
def test_errors_round_trip_through_pickle(error: PipelineError) -> None:
    """Every exception class pickles and unpickles to the same type, str(), args and attributes."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_errors_subclass_pipeline_error() -> None:
    """Every exception class is a PipelineError, and PipelineError is an Exception."""
    for cls in (StageError, WorkerDied, SourceError, StageTypeError, WiringError):
        assert issubclass(cls, PipelineError)
    assert issubclass(PipelineError, Exception)


def test_errors_type_errors_are_type_errors() -> None:
    """StageTypeError and WiringError are also TypeErrors; the runtime failures are not."""
    assert issubclass(StageTypeError, TypeError)
    assert issubclass(WiringError, TypeError)
    for cls in (StageError, WorkerDied, SourceError):
        assert not issubclass(cls, TypeError)


def test_worker_died_str_names_stage_and_exit() -> None:
    """WorkerDied's message names the stage and the exit code, or the signal."""
    assert "resize" in str(WorkerDied("resize", 1, 3))
    assert "3" in str(WorkerDied("resize", 1, 3))
    assert "SIGKILL" in str(WorkerDied("resize", 1, -9))


# -- a stage raises --


def test_stage_error_names_stage_and_item_with_original_cause(backend: Backend) -> None:
    """A raising stage gives StageError naming the stage and the item, with the original exception as cause."""
    with pytest.raises(StageError) as info:
        (source(["1", "x2", "3"]) >> parse).run(backend=backend)
    err = info.value
    assert err.stage == "parse"
    assert "'x2'" in err.item_repr
    assert "parse" in str(err)
    assert "'x2'" in str(err)
    assert type(err.__cause__) is ValueError
    assert "x2" in str(err.__cause__)


def test_stage_error_keeps_user_exception_type(backend: Backend) -> None:
    """The cause of a StageError has the exact type the stage function raised."""
    failing = stage(name="no_threes")(_fail_on_three)
    with pytest.raises(StageError, match="no_threes") as info:
        (source(range(5)) >> failing).run(backend=backend)
    assert info.value.stage == "no_threes"
    assert info.value.item_repr == "3"
    assert type(info.value.__cause__) is CustomError
    assert str(info.value.__cause__) == "three is not allowed"


def test_stage_error_names_the_failing_stage_of_a_chain(backend: Backend) -> None:
    """In a chain, the StageError names the stage that raised and the item it received."""
    with pytest.raises(StageError) as info:
        (source([0, 1, 2]) >> plus_two >> stage(name="check")(_fail_on_three)).run(backend=backend)
    assert info.value.stage == "check"
    assert info.value.item_repr == "3"
    with pytest.raises(StageError) as info2:
        (source([1, 3]) >> stage(name="first")(_fail_on_three) >> double).run(backend=backend)
    assert info2.value.stage == "first"
    assert info2.value.item_repr == "3"


def test_stage_error_traceback_shows_failing_line(backend: Backend) -> None:
    """The formatted StageError, with its causes, shows the line of the stage that raised."""
    with pytest.raises(StageError) as info:
        (source(["nope"]) >> parse).run(backend=backend)
    text = "".join(traceback.format_exception(info.value))
    assert "return int(s)" in text


def test_stage_error_truncates_long_item_repr(backend: Backend) -> None:
    """The item's repr in a StageError is cut short for a huge item."""
    with pytest.raises(StageError) as info:
        (source(["y" * 100_000]) >> parse).run(backend=backend)
    assert "yyyy" in str(info.value)
    assert len(str(info.value)) < 2_000


def test_stage_error_from_fluent_task(backend: Backend) -> None:
    """A raising task() gives StageError with the original exception as cause."""
    with pytest.raises(StageError) as info:
        Pipeline([1, 0, 2]).task(lambda x: 10 // x).run(backend=backend)
    assert "0" in info.value.item_repr
    assert type(info.value.__cause__) is ZeroDivisionError


def test_stage_error_surfaces_promptly_on_infinite_source(backend: Backend) -> None:
    """A stage failing on an infinite source stops the run with StageError within seconds."""
    started = time.monotonic()
    with pytest.raises(StageError):
        (source(itertools.count()) >> stage(_fail_on_three)).run(backend=backend)
    assert time.monotonic() - started < 10


def test_stage_error_from_class_stage_constructor(backend: Backend) -> None:
    """A class stage whose constructor raises gives StageError naming the stage, with the cause."""

    class Broken:
        def __init__(self) -> None:
            msg = "model file missing"
            raise CustomError(msg)

        def __call__(self, x: int) -> int:
            return x  # pragma: no cover - never built

    with pytest.raises(StageError, match="Broken") as info:
        (source([1, 2]) >> stage(Broken)()).run(backend=backend)
    assert type(info.value.__cause__) is CustomError


def test_stage_error_from_class_stage_close(backend: Backend) -> None:
    """A class stage whose close() raises gives StageError naming the stage, with the cause."""

    class BadClose:
        def __call__(self, x: int) -> int:
            return x

        def close(self) -> None:
            msg = "flush failed"
            raise CustomError(msg)

    with pytest.raises(StageError, match="BadClose") as info:
        (source([1, 2]) >> stage(BadClose)()).run(backend=backend)
    assert type(info.value.__cause__) is CustomError


# -- the source raises --


def _broken_source() -> Iterator[int]:
    """Two items, then an error."""
    yield 1
    yield 2
    msg = "bad record"
    raise CustomError(msg)


def _unplugged_camera() -> Iterator[int]:
    """Two items, then an OSError, as a device or a file read fails."""
    yield 1
    yield 2
    msg = "camera unplugged"
    raise OSError(msg)


def test_source_error_has_original_cause(backend: Backend) -> None:
    """A raising source gives SourceError with the original exception as cause."""
    with pytest.raises(SourceError) as info:
        (source(_broken_source()) >> double).run(backend=backend)
    assert type(info.value.__cause__) is CustomError
    assert str(info.value.__cause__) == "bad record"


def test_source_error_from_os_error(backend: Backend, request: pytest.FixtureRequest) -> None:
    """A source raising OSError gives SourceError with that OSError as cause."""
    with pytest.raises(SourceError) as info:
        (source(_unplugged_camera()) >> double).run(backend=backend)
    assert type(info.value.__cause__) is OSError
    assert str(info.value.__cause__) == "camera unplugged"


def test_source_error_from_source_function(backend: Backend) -> None:
    """A ``@source`` generator that raises before its first item gives SourceError with the cause."""

    @source
    def frames(device: str) -> Iterator[int]:
        if device.startswith("cam"):
            msg = f"no device {device}"
            raise CustomError(msg)
        yield 0  # pragma: no cover - never reached

    with pytest.raises(SourceError) as info:
        frames("cam0").run(backend=backend)
    assert type(info.value.__cause__) is CustomError
    assert str(info.value.__cause__) == "no device cam0"


class _AlwaysFailing:
    """An iterator that raises on every next(): it must be read once, not retried."""

    def __init__(self) -> None:
        self.calls = 0

    def __iter__(self) -> _AlwaysFailing:
        return self

    def __next__(self) -> int:
        self.calls += 1
        msg = "disk gone"
        raise OSError(msg)


def test_source_error_from_an_iterator_that_keeps_failing(backend: Backend) -> None:
    """An iterator raising on every next() gives SourceError at once, after one call."""
    items = _AlwaysFailing()
    with pytest.raises(SourceError) as info:
        (source(items) >> double).run(backend=backend)
    assert str(info.value.__cause__) == "disk gone"
    assert items.calls == 1


# -- check_types --

TYPE_ERROR_WRAPPED = (
    "raises StageError wrapping the StageTypeError (item '<unknown>'), not StageTypeError"
)


def test_check_types_rejects_input_mismatch(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """check_types=True raises StageTypeError naming the stage, the expected hint and the actual type of an input."""
    wrong = cast("list[int]", [1, "a"])
    with pytest.raises(StageTypeError) as info:
        (source(wrong) >> double).run(backend=backend, check_types=True)
    err = info.value
    assert (err.stage, err.where, err.expected, err.actual) == ("double", "input", "int", "str")
    for part in ("double", "int", "str", "'a'"):
        assert part in str(err)


def test_check_types_rejects_output_mismatch(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """check_types=True raises StageTypeError naming the stage, the expected hint and the actual type of an output."""
    with pytest.raises(StageTypeError) as info:
        (source([1]) >> lies).run(backend=backend, check_types=True)
    err = info.value
    assert (err.stage, err.where, err.expected, err.actual) == ("lies", "output", "str", "int")
    for part in ("lies", "str", "int"):
        assert part in str(err)


def test_check_types_error_is_a_type_error(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """A StageTypeError from a run can be caught as TypeError."""
    wrong = cast("list[str]", [1])
    with pytest.raises(TypeError):
        (source(wrong) >> parse).run(backend=backend, check_types=True)


def test_check_types_passes_int_into_float_stage(backend: Backend) -> None:
    """check_types=True accepts an int where a float is expected, as PEP 484 does."""
    assert (source([1, 3]) >> half).run(backend=backend, check_types=True) == [0.5, 1.5]


def test_check_types_passes_matching_items(backend: Backend) -> None:
    """check_types=True leaves a well-typed pipeline's results unchanged."""
    pipeline = source(["1", "2"]) >> parse >> double
    assert pipeline.run(backend=backend, check_types=True) == [2, 4]


def test_check_types_off_by_default(backend: Backend) -> None:
    """Without check_types, mismatched items are not checked."""
    wrong = cast("list[int]", ["a"])
    result: object = (source(wrong) >> double).run(backend=backend)
    assert result == ["aa"]


# -- worker death and pickling (only where workers are separate processes) --


def test_worker_died_names_stage_and_exit_code(backend: Backend) -> None:
    """A worker that exits abruptly gives WorkerDied naming the stage and the exit code."""
    if backend in IN_PROCESS:
        pytest.skip("os._exit in an in-process worker would end the test process itself")

    def exit_on_two(x: int) -> int:
        if x == 2:
            os._exit(3)
        return x

    with pytest.raises(WorkerDied) as info:
        (source(range(5)) >> stage(name="fragile")(exit_on_two)).run(backend=backend)
    assert info.value.stage == "fragile"
    assert info.value.exitcode == 3
    assert "fragile" in str(info.value)
    assert "3" in str(info.value)


def test_worker_died_names_signal(backend: Backend) -> None:
    """A worker killed by a signal gives WorkerDied naming the stage and the signal."""
    if backend in IN_PROCESS:
        pytest.skip("killing an in-process worker would kill the test process itself")

    def killed_on_two(x: int) -> int:
        if x == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(WorkerDied) as info:
        (source(range(5)) >> stage(name="oom_victim")(killed_on_two)).run(backend=backend)
    assert info.value.stage == "oom_victim"
    assert info.value.exitcode == -signal.SIGKILL
    assert "SIGKILL" in str(info.value)


def test_unpicklable_output_names_the_stage(backend: Backend) -> None:
    """A stage output that cannot be pickled gives a StageError or WiringError naming the stage."""
    if backend == "inline":
        pytest.skip("the inline backend runs in the caller's thread and pickles nothing")

    def make_lock(x: int) -> object:
        return threading.Lock()

    with pytest.raises((StageError, WiringError), match="lock_maker"):
        (source([1]) >> stage(name="lock_maker")(make_lock)).run(backend=backend)


def test_unpicklable_stage_names_the_stage(backend: Backend) -> None:
    """A stage function that cannot be pickled gives a StageError or WiringError naming the stage."""
    if backend == "inline":
        pytest.skip("the inline backend runs in the caller's thread and pickles nothing")
    lock = threading.Lock()

    def guarded(x: int) -> int:
        with lock:
            return x

    with pytest.raises((StageError, WiringError), match="guarded"):
        (source([1]) >> stage(guarded)).run(backend=backend)
