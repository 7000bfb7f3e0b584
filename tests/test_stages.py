"""Conformance tests for stages: every stage kind, class stages, options and error policies."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, assert_type

import pytest
from filelog import lines as _lines
from filelog import record as _record
from typing_extensions import TypeIs

from olympipe_typed import (
    Pipeline,
    Stage,
    StageError,
    batch,
    filter_stage,
    flat_stage,
    source,
    stage,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(60)


# -- helpers that work across processes: state lives in files, not in globals --


def _flaky(folder: Path, failures: int) -> Callable[[int], int]:
    """A function that raises on its first ``failures`` calls for each item, then returns 10 * x."""

    def call(x: int) -> int:
        attempts = folder / f"attempts-{x}"
        _record(attempts, "try")
        if len(_lines(attempts)) <= failures:
            msg = f"attempt failed for {x}"
            raise RuntimeError(msg)
        return 10 * x

    return call


# -- stages used by the tests --


@stage
def times_2(x: int) -> int:
    """Double an int."""
    return x * 2


@stage
def add_one(x: int) -> int:
    """Add one to an int."""
    return x + 1


@flat_stage
def repeat(x: int) -> list[int]:
    """``x`` copies of ``x``."""
    return [x] * x


@flat_stage
def count_up(x: int) -> Iterator[int]:
    """0, 1, ..., x - 1, from a generator."""
    yield from range(x)


@filter_stage
def is_even(x: int) -> bool:
    """Keep even ints."""
    return x % 2 == 0


@filter_stage
def is_int(x: int | str) -> TypeIs[int]:
    """Keep ints, narrowing ``int | str`` to ``int``."""
    return isinstance(x, int)


class Scaler:
    """A class stage that logs its construction, its calls and its close() to a file."""

    def __init__(self, log: Path, factor: int) -> None:
        self.log = log
        self.factor = factor
        _record(log, "init")

    def __call__(self, x: int) -> int:
        _record(self.log, f"call {x}")
        return x * self.factor

    def close(self) -> None:
        _record(self.log, "close")


@stage
class Tagger:
    """A class stage made with ``@stage`` on the class itself."""

    def __init__(self, log: Path, prefix: str) -> None:
        self.log = log
        self.prefix = prefix
        _record(log, "init")

    def __call__(self, x: int) -> str:
        return f"{self.prefix}{x}"

    def close(self) -> None:
        _record(self.log, "close")


# -- map, flat and filter stages --


def test_stage_maps_each_item_in_order(backend: Backend) -> None:
    """A map stage gives one output per input, in input order."""
    pipeline = source(range(6)) >> times_2
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [0, 2, 4, 6, 8, 10]


def test_stage_with_workers_keeps_order(backend: Backend) -> None:
    """A map stage with several workers still gives outputs in input order."""
    pipeline = source(range(50)) >> times_2.options(workers=3) >> add_one.options(workers=2)
    assert pipeline.run(backend=backend) == [2 * x + 1 for x in range(50)]


def test_flat_stage_emits_zero_or_more_outputs_in_order(backend: Backend) -> None:
    """A flat stage emits each input's outputs in order, and nothing for an empty result."""
    pipeline = source([0, 1, 2, 3]) >> repeat
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [1, 2, 2, 3, 3, 3]


def test_flat_stage_accepts_generator_functions(backend: Backend) -> None:
    """A flat stage made from a generator function emits what the generator yields."""
    assert (source([3, 0, 2]) >> count_up).run(backend=backend) == [0, 1, 2, 0, 1]


def test_flat_stage_with_workers_keeps_order(backend: Backend) -> None:
    """A flat stage with several workers keeps each input's outputs together and in order."""
    pipeline = source(range(20)) >> repeat.options(workers=3)
    assert pipeline.run(backend=backend) == [x for x in range(20) for _ in range(x)]


def test_filter_stage_keeps_items_where_true(backend: Backend) -> None:
    """A filter stage keeps exactly the items for which the predicate is true, in order."""
    pipeline = source(range(10)) >> is_even
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [0, 2, 4, 6, 8]


def test_filter_stage_typeis_narrows_items(backend: Backend) -> None:
    """A TypeIs predicate keeps the matching items and narrows the pipeline's item type."""
    data: list[int | str] = [1, "a", 2, "b", 3]
    pipeline = source(data) >> is_int
    assert_type(is_int, Stage[int | str, int, bool])
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [1, 2, 3]


def test_filter_stage_with_workers_keeps_order(backend: Backend) -> None:
    """A filter stage with several workers keeps the kept items in input order."""
    pipeline = source(range(40)) >> is_even.options(workers=3)
    assert pipeline.run(backend=backend) == list(range(0, 40, 2))


# -- batch --


def test_batch_groups_items_last_group_short(backend: Backend) -> None:
    """batch(n) gives lists of n items in order, the last one shorter."""
    pipeline = source(range(7)) >> batch(3)
    assert_type(pipeline, Pipeline[list[int]])
    assert pipeline.run(backend=backend) == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_exact_multiple_has_no_empty_group(backend: Backend) -> None:
    """batch(n) over a multiple of n items emits no trailing empty list."""
    assert (source(range(4)) >> batch(2)).run(backend=backend) == [[0, 1], [2, 3]]


def test_batch_after_stage_is_a_composite(backend: Backend) -> None:
    """``stage >> batch(n)`` is a Stage producing lists, usable in any pipeline."""
    doubled_pairs = times_2 >> batch(2)
    assert_type(doubled_pairs, Stage[int, list[int]])
    assert (source(range(5)) >> doubled_pairs).run(backend=backend) == [[0, 2], [4, 6], [8]]


def _burst_then_stall() -> Iterator[int]:
    """A burst of 25 items, a long pause, then 5 more items."""
    yield from range(25)
    time.sleep(2.0)  # long beside the 0.3 s timeout: a loaded machine or Ray may be slow
    yield from range(25, 30)


FEEDER_HOLDS_ITEMS = (
    "the source feeder sends items in growing chunks and holds already-produced items "
    "while the generator stalls, so they miss their time window"
)


def test_batch_timeout_flushes_partial_group(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """batch(n, timeout) emits a partial group once its first item has waited ``timeout`` seconds."""
    pipeline = source(_burst_then_stall()) >> batch(100, timeout=0.3)
    assert pipeline.run(backend=backend) == [list(range(25)), list(range(25, 30))]


def test_batch_rejects_non_positive_size() -> None:
    """batch(0) raises ValueError naming the size parameter and its value."""
    with pytest.raises(ValueError, match=r"\bn\b.*\b0\b"):
        batch(0)


# -- class stages --


def test_stage_class_builds_instance_in_worker_once_and_closes_at_end(
    backend: Backend, tmp_path: Path
) -> None:
    """``stage(Cls)(args)`` builds one instance when the pipeline runs and closes it after the last item."""
    log = tmp_path / "log"
    scale = stage(Scaler)(log, 3)
    assert_type(scale, Stage[int, int])
    pipeline = source(range(4)) >> scale
    assert _lines(log) == []
    assert pipeline.run(backend=backend) == [0, 3, 6, 9]
    assert _lines(log) == ["init", "call 0", "call 1", "call 2", "call 3", "close"]


def test_stage_class_with_workers_builds_one_instance_per_worker(
    backend: Backend, tmp_path: Path
) -> None:
    """A class stage with two workers builds at most one instance per worker and closes each once."""
    log = tmp_path / "log"
    pipeline = source(range(20)) >> stage(workers=2)(Scaler)(log, 2)
    assert pipeline.run(backend=backend) == [2 * x for x in range(20)]
    lines = _lines(log)
    inits, closes = lines.count("init"), lines.count("close")
    assert 1 <= inits <= 2
    assert closes == inits
    assert sorted(int(line.split()[1]) for line in lines if line.startswith("call")) == list(
        range(20)
    )
    assert lines[0] == "init"


def test_stage_decorated_class_gives_a_stage_factory(backend: Backend, tmp_path: Path) -> None:
    """``@stage`` on a class makes calling the class give a stage, built once and closed once."""
    log = tmp_path / "log"
    pipeline = source(range(3)) >> Tagger(log, "t-")
    assert_type(pipeline, Pipeline[str])
    assert _lines(log) == []
    assert pipeline.run(backend=backend) == ["t-0", "t-1", "t-2"]
    assert _lines(log) == ["init", "close"]


def test_stage_class_is_rebuilt_for_each_run(backend: Backend, tmp_path: Path) -> None:
    """Running a pipeline with a class stage twice builds and closes a fresh instance each run."""
    log = tmp_path / "log"
    pipeline = source([1]) >> stage(Scaler)(log, 5)
    assert pipeline.run(backend=backend) == [5]
    assert pipeline.run(backend=backend) == [5]
    assert _lines(log) == ["init", "call 1", "close", "init", "call 1", "close"]


def test_stage_class_without_call_is_rejected() -> None:
    """stage() on a class without ``__call__`` raises TypeError naming the class."""

    class NotCallable:
        pass

    with pytest.raises(TypeError, match="NotCallable"):
        stage(NotCallable)  # type: ignore[type-var]  # pyright: ignore[reportCallIssue, reportArgumentType]


def test_stage_class_checks_init_arguments() -> None:
    """Calling a class-stage factory with arguments its ``__init__`` rejects raises TypeError."""
    factory: Any = stage(Scaler)
    with pytest.raises(TypeError, match="Scaler"):
        factory("only-one-argument", 1, 2)


# -- calling a stage directly --


def test_stage_call_runs_underlying_function() -> None:
    """Calling a map stage calls the underlying function on one item."""
    assert times_2(3) == 6
    assert_type(times_2(3), int)


def test_stage_composite_call_chains_functions() -> None:
    """Calling a composite ``a >> b`` applies a then b to one item."""
    assert (times_2 >> add_one)(3) == 7
    assert (add_one >> times_2 >> times_2)(1) == 8


def test_stage_fanout_call_with_several_outputs_raises() -> None:
    """Calling a fan-out stage, which gives two outputs for one item, raises TypeError."""
    both = times_2 | add_one
    with pytest.raises(TypeError, match="2 items"):
        both(3)


def test_stage_class_call_builds_instance_once(tmp_path: Path) -> None:
    """Calling a class stage directly builds its instance on the first call only."""
    log = tmp_path / "log"
    scale = stage(Scaler)(log, 3)
    assert (scale(2), scale(5)) == (6, 15)
    assert _lines(log) == ["init", "call 2", "call 5"]


def test_flat_stage_call_returns_underlying_iterable() -> None:
    """Calling a flat stage directly returns what the underlying function returns."""
    result: object = repeat(2)
    assert result == [2, 2]


# -- options --


def test_stage_options_returns_copy_with_new_options(backend: Backend) -> None:
    """``.options()`` returns a new stage with the new options and leaves the original unchanged."""
    fast = times_2.options(workers=3, name="fast_times_2")
    assert_type(fast, Stage[int, int])
    assert fast is not times_2
    assert (fast.name, fast.workers) == ("fast_times_2", 3)
    assert (times_2.name, times_2.workers) == ("times_2", 1)
    assert (source(range(5)) >> fast).run(backend=backend) == [0, 2, 4, 6, 8]


def test_stage_options_keeps_unspecified_options() -> None:
    """Options not passed to ``.options()`` keep their previous values."""
    named = times_2.options(name="double")
    both = named.options(workers=2)
    assert (both.name, both.workers) == ("double", 2)


def test_stage_decorator_options_set_name_and_workers() -> None:
    """Decorator keywords set the stage's name and worker count."""

    @stage(workers=4, name="resize")
    def resize(x: int) -> int:
        return x

    assert (resize.name, resize.workers) == ("resize", 4)


INVALID_OPTIONS = [
    pytest.param({"workers": 0}, r"\bworkers\b.*\b0\b", id="workers=0"),
    pytest.param({"retries": -1}, r"\bretries\b.*-1\b", id="retries=-1"),
    pytest.param({"on_error": "bogus"}, r"\bon_error\b.*'bogus'", id="on_error=bogus"),
    pytest.param({"queue_size": 0}, r"\bqueue_size\b.*\b0\b", id="queue_size=0"),
]


@pytest.mark.parametrize(("options", "message"), INVALID_OPTIONS)
def test_stage_rejects_invalid_options(options: dict[str, Any], message: str) -> None:
    """Every stage decorator rejects an invalid option with ValueError naming it and its value."""
    with pytest.raises(ValueError, match=message):
        stage(**options)
    with pytest.raises(ValueError, match=message):
        flat_stage(**options)
    with pytest.raises(ValueError, match=message):
        filter_stage(**options)


@pytest.mark.parametrize(("options", "message"), INVALID_OPTIONS)
def test_stage_options_rejects_invalid_values(options: dict[str, Any], message: str) -> None:
    """``.options()`` rejects an invalid option with ValueError naming it and its value."""
    with pytest.raises(ValueError, match=message):
        times_2.options(**options)


# -- error policies --


@stage(on_error="skip")
def inverse(x: int) -> float:
    """1 / x; skips x == 0."""
    return 1 / x


def test_stage_on_error_skip_drops_failing_items(backend: Backend) -> None:
    """on_error="skip" drops the items whose call raised and keeps the others in order."""
    assert (source([2, 0, 4, 0, 5]) >> inverse).run(backend=backend) == [0.5, 0.25, 0.2]


def _describe_failure(x: int, exc: Exception) -> str:
    """An on_error replacement naming the item and the exception type."""
    return f"{x}:{type(exc).__name__}"


@stage(on_error=_describe_failure)
def reciprocal_text(x: int) -> str:
    """1 / x as text; failures replaced by ``_describe_failure``."""
    return f"{1 / x:.2f}"


def test_stage_on_error_callable_replaces_failing_items(backend: Backend) -> None:
    """A callable on_error's result, given the item and the exception, replaces the failed output."""
    result = (source([4, 0, 2]) >> reciprocal_text).run(backend=backend)
    assert result == ["0.25", "0:ZeroDivisionError", "0.50"]


def test_stage_on_error_skip_applies_to_flat_stages(backend: Backend) -> None:
    """on_error="skip" on a flat stage drops every output of the failing item."""

    @flat_stage(on_error="skip")
    def digits(x: int) -> list[int]:
        if x < 0:
            msg = "negative"
            raise ValueError(msg)
        return [int(c) for c in str(x)]

    assert (source([12, -1, 3]) >> digits).run(backend=backend) == [1, 2, 3]


def test_stage_retries_recovers_from_transient_failures(backend: Backend, tmp_path: Path) -> None:
    """retries=2 calls a function that fails twice per item three times per item and keeps its result."""
    flaky = stage(retries=2)(_flaky(tmp_path, failures=2))
    assert (source([1, 2, 3]) >> flaky).run(backend=backend) == [10, 20, 30]
    for x in (1, 2, 3):
        assert len(_lines(tmp_path / f"attempts-{x}")) == 3


def test_stage_retries_exhausted_raises_stage_error(backend: Backend, tmp_path: Path) -> None:
    """When every retry fails, the stage raises StageError with the last exception as cause."""
    flaky = stage(retries=1, name="flaky")(_flaky(tmp_path, failures=5))
    with pytest.raises(StageError, match=re.escape("flaky")) as info:
        (source([7]) >> flaky).run(backend=backend)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert len(_lines(tmp_path / "attempts-7")) == 2


def test_stage_retries_then_skip_drops_item(backend: Backend, tmp_path: Path) -> None:
    """retries combined with on_error="skip" drops an item only after every attempt failed."""

    def fails_on_two(x: int) -> int:
        _record(tmp_path / f"calls-{x}", "try")
        if x == 2:
            msg = "two"
            raise ValueError(msg)
        return x

    guarded = stage(retries=2, on_error="skip")(fails_on_two)
    assert (source([1, 2, 3]) >> guarded).run(backend=backend) == [1, 3]
    assert len(_lines(tmp_path / "calls-2")) == 3
    assert len(_lines(tmp_path / "calls-1")) == 1
