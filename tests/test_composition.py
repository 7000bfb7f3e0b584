"""Conformance tests for composition (``>>``, ``|``, run_all), sources and the ways to run a pipeline."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Generator
from typing import TYPE_CHECKING, assert_type

import pytest
from filelog import lines as _lines
from filelog import record as _record

from olympipe_typed import Pipeline, Stage, filter_stage, flat_stage, run_all, source, stage

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(60)


# -- helpers that work across processes: state lives in files, not in globals --


def _counted(log: Path) -> Stage[int, int]:
    """An identity stage that logs each item it sees to ``log``."""

    def seen(x: int) -> int:
        _record(log, str(x))
        return x

    return stage(seen)


# -- stages used by the tests --


@stage
def times_2(x: int) -> int:
    """Double an int."""
    return x * 2


@stage
def times_10(x: int) -> int:
    """Multiply an int by ten."""
    return x * 10


@stage
def add_one(x: int) -> int:
    """Add one to an int."""
    return x + 1


@stage
def to_str(x: int) -> str:
    """An int as text."""
    return str(x)


@stage
def shout(s: str) -> str:
    """Text in capitals with a bang."""
    return f"{s.upper()}!"


@flat_stage
def twice(x: int) -> list[int]:
    """Each item two times."""
    return [x, x]


@filter_stage
def is_even(x: int) -> bool:
    """Keep even ints."""
    return x % 2 == 0


class Scaler:
    """A class stage that logs its construction and close() to a file."""

    def __init__(self, log: Path, factor: int) -> None:
        self.log = log
        self.factor = factor
        _record(log, "init")

    def __call__(self, x: int) -> int:
        return x * self.factor

    def close(self) -> None:
        _record(self.log, "close")


# -- >> --


def test_stage_rshift_builds_reusable_composite(backend: Backend) -> None:
    """``a >> b >> c`` is a Stage that applies a, b, c in turn and can be reused in several pipelines."""
    label = times_2 >> add_one >> to_str
    assert_type(label, Stage[int, str])
    assert (source([1, 2]) >> label).run(backend=backend) == ["3", "5"]
    assert (source(range(3)) >> label).run(backend=backend) == ["1", "3", "5"]


def test_pipeline_rshift_stage_applies_stage(backend: Backend) -> None:
    """``Pipeline[A] >> Stage[A, B]`` is a Pipeline[B] of the stage's outputs."""
    pipeline = source(range(4)) >> to_str >> shout
    assert_type(pipeline, Pipeline[str])
    assert pipeline.run(backend=backend) == ["0!", "1!", "2!", "3!"]


def test_pipeline_rshift_composite_equals_chained_stages(backend: Backend) -> None:
    """``p >> (a >> b)`` gives the same items as ``p >> a >> b``."""
    grouped = (source(range(5)) >> (times_2 >> add_one)).run(backend=backend)
    chained = (source(range(5)) >> times_2 >> add_one).run(backend=backend)
    assert grouped == chained == [1, 3, 5, 7, 9]


def test_pipeline_rshift_does_not_change_the_original(backend: Backend) -> None:
    """Extending a pipeline with ``>>`` leaves the original pipeline's outputs unchanged."""
    base = source(range(3))
    doubled = base >> times_2
    assert base.run(backend=backend) == [0, 1, 2]
    assert doubled.run(backend=backend) == [0, 2, 4]


def test_stage_same_object_used_twice_in_one_pipeline(backend: Backend) -> None:
    """The same Stage object may appear several times in one pipeline, each use applied in turn."""
    pipeline = source([1, 2]) >> times_2 >> add_one >> times_2
    assert pipeline.run(backend=backend) == [6, 10]
    step = times_2 >> add_one
    assert (source([1, 2]) >> step >> step).run(backend=backend) == [7, 11]


def test_stage_class_used_twice_gets_an_instance_per_use(backend: Backend, tmp_path: Path) -> None:
    """A class stage used twice in one pipeline builds and closes one instance per use."""
    log = tmp_path / "log"
    scale = stage(Scaler)(log, 3)
    assert (source([1, 2]) >> scale >> scale).run(backend=backend) == [9, 18]
    assert sorted(_lines(log)) == ["close", "close", "init", "init"]


# -- | between stages (fan-out) --


def test_stage_or_fans_out_first_branch_then_second(backend: Backend) -> None:
    """``a | b`` sends every item to both; per input, a's output then b's output."""
    both = times_2 | to_str
    assert_type(both, Stage[int, int | str])
    pipeline = source([1, 2, 3]) >> both
    assert_type(pipeline, Pipeline[int | str])
    assert pipeline.run(backend=backend) == [2, "1", 4, "2", 6, "3"]


def test_stage_or_orders_flat_and_filter_branches(backend: Backend) -> None:
    """A fan-out of a flat stage and a filter gives, per input, all flat outputs then the kept item."""
    pipeline = source([1, 2, 3, 4]) >> (twice | is_even)
    assert pipeline.run(backend=backend) == [1, 1, 2, 2, 2, 3, 3, 4, 4, 4]


def test_stage_or_filter_first_branch_then_flat(backend: Backend) -> None:
    """With the filter as first branch, its kept item comes before the flat stage's outputs."""
    pipeline = source([1, 2]) >> (is_even | twice)
    assert pipeline.run(backend=backend) == [1, 1, 2, 2, 2]


def test_stage_or_nested_fanouts_keep_branch_order(backend: Backend) -> None:
    """Nested fan-outs give, per input, their leaves' outputs from left to right."""
    nested = times_10 | (add_one >> (twice | to_str))
    assert (source([1, 3]) >> nested).run(backend=backend) == [10, 2, 2, "2", 30, 4, 4, "4"]
    left = (times_2 | add_one) | times_10
    right = times_2 | (add_one | times_10)
    expected = [2, 2, 10, 4, 3, 20]
    assert (source([1, 2]) >> left).run(backend=backend) == expected
    assert (source([1, 2]) >> right).run(backend=backend) == expected


def test_stage_or_then_rshift_applies_to_merged_outputs(backend: Backend) -> None:
    """``(a | b) >> c`` applies c to the merged outputs in fan-out order."""
    pipeline = source([1, 2]) >> ((times_2 | add_one) >> to_str)
    assert_type(pipeline, Pipeline[str])
    assert pipeline.run(backend=backend) == ["2", "2", "4", "3"]


def test_stage_or_with_workers_keeps_order(backend: Backend) -> None:
    """A fan-out whose branches have several workers still gives per-input branch order."""
    both = times_2.options(workers=3) | add_one.options(workers=2)
    result = (source(range(30)) >> both).run(backend=backend)
    assert result == [y for x in range(30) for y in (2 * x, x + 1)]


def test_stage_or_branch_with_no_output_keeps_order(backend: Backend) -> None:
    """A fan-out whose first branch drops an item gives only the second branch's output for it."""
    pipeline = source([1, 2, 3]) >> (is_even | times_10)
    assert pipeline.run(backend=backend) == [10, 2, 20, 30]


# -- | between pipelines (gather) --


def test_pipeline_or_gathers_both_flows(backend: Backend) -> None:
    """``p | q`` yields every item of both flows, each flow's items in their own order."""
    numbers = source([1, 2, 3])
    letters = source(["a", "b"])
    both = numbers | letters
    assert_type(both, Pipeline[int | str])
    result = both.run(backend=backend)
    assert Counter(result) == Counter([1, 2, 3, "a", "b"])
    assert [x for x in result if isinstance(x, int)] == [1, 2, 3]
    assert [x for x in result if isinstance(x, str)] == ["a", "b"]


def test_pipeline_or_of_branches_of_one_source(backend: Backend, tmp_path: Path) -> None:
    """Gathering two branches of one upstream gives both branches' items and runs the upstream once."""
    log = tmp_path / "log"
    base = source(range(4)) >> _counted(log)
    gathered = (base >> times_10) | (base >> to_str)
    result = gathered.run(backend=backend)
    assert Counter(result) == Counter([0, 10, 20, 30, "0", "1", "2", "3"])
    assert [x for x in result if isinstance(x, int)] == [0, 10, 20, 30]
    assert sorted(_lines(log)) == ["0", "1", "2", "3"]


def test_pipeline_or_then_stage(backend: Backend) -> None:
    """A gathered pipeline can be extended with ``>>`` like any other."""
    result = ((source([1, 2]) | source([10])) >> times_2).run(backend=backend)
    assert sorted(result) == [2, 4, 20]


# -- run_all --


def test_run_all_returns_one_list_per_pipeline(backend: Backend) -> None:
    """run_all gives a tuple with each pipeline's outputs, in argument order."""
    result = run_all(
        source(range(3)) >> times_2,
        source(["a", "b"]) >> shout,
        source([5]),
        backend=backend,
    )
    assert_type(result, tuple[list[int], list[str], list[int]])
    assert result == ([0, 2, 4], ["A!", "B!"], [5])


def test_run_all_shared_upstream_runs_once_per_item(backend: Backend, tmp_path: Path) -> None:
    """A node shared by several pipelines runs once per item, and every child sees every item."""
    log = tmp_path / "log"
    base = source(range(6)) >> _counted(log)
    doubled = base >> times_2.options(workers=2)
    labels = base >> to_str.options(workers=2)
    evens = base >> is_even
    assert run_all(doubled, labels, evens, backend=backend) == (
        [0, 2, 4, 6, 8, 10],
        ["0", "1", "2", "3", "4", "5"],
        [0, 2, 4],
    )
    assert sorted(_lines(log)) == ["0", "1", "2", "3", "4", "5"]


def test_run_all_shared_generator_source_read_once(backend: Backend, tmp_path: Path) -> None:
    """A generator source shared by two pipelines is read once and both see all its items."""
    log = tmp_path / "log"

    def numbers() -> Iterator[int]:
        for x in range(4):
            _record(log, str(x))
            yield x

    base = source(numbers())
    assert run_all(base >> times_2, base >> add_one, backend=backend) == (
        [0, 2, 4, 6],
        [1, 2, 3, 4],
    )
    assert _lines(log) == ["0", "1", "2", "3"]


def test_run_all_same_pipeline_twice_gives_two_copies(backend: Backend) -> None:
    """Passing one pipeline twice to run_all gives its outputs in both places."""
    pipeline = source(range(3)) >> times_2
    assert run_all(pipeline, pipeline, backend=backend) == ([0, 2, 4], [0, 2, 4])


def test_run_all_pipeline_and_its_extension(backend: Backend) -> None:
    """run_all of a pipeline and a pipeline built on it gives both outputs."""
    base = source(range(3)) >> add_one
    assert run_all(base, base >> to_str, backend=backend) == ([1, 2, 3], ["1", "2", "3"])


def test_run_all_independent_pipelines(backend: Backend) -> None:
    """run_all of pipelines with separate sources gives each one's outputs."""
    assert run_all(source([1]), source([2, 3]) >> times_2, backend=backend) == ([1], [4, 6])


# -- sources --


def test_source_reads_lists_ranges_strings_and_tuples(backend: Backend) -> None:
    """source() reads any iterable in order."""
    assert source([3, 1, 2]).run(backend=backend) == [3, 1, 2]
    assert source(range(2, 5)).run(backend=backend) == [2, 3, 4]
    assert source("abc").run(backend=backend) == ["a", "b", "c"]
    assert source((1.5, 2.5)).run(backend=backend) == [1.5, 2.5]


def test_source_empty_gives_empty_result(backend: Backend) -> None:
    """A pipeline over an empty source gives an empty list."""
    empty: list[int] = []
    assert (source(empty) >> times_2).run(backend=backend) == []


def test_source_reads_generator(backend: Backend) -> None:
    """source() reads a generator object lazily, in order."""
    squares = (x * x for x in range(5))
    assert (source(squares) >> add_one).run(backend=backend) == [1, 2, 5, 10, 17]


def test_source_decorator_makes_reusable_source_with_arguments(
    backend: Backend, tmp_path: Path
) -> None:
    """``@source`` on a generator function gives a function whose calls make pipelines, run lazily."""
    log = tmp_path / "log"

    @source
    def countdown(start: int, step: int = 1) -> Iterator[int]:
        _record(log, "opened")
        yield from range(start, 0, -step)

    pipeline = countdown(5, step=2)
    assert_type(pipeline, Pipeline[int])
    assert _lines(log) == []
    assert pipeline.run(backend=backend) == [5, 3, 1]
    assert (countdown(3) >> times_2).run(backend=backend) == [6, 4, 2]
    assert pipeline.run(backend=backend) == [5, 3, 1]
    assert _lines(log) == ["opened", "opened", "opened"]


def test_source_infinite_generator_with_limit(backend: Backend) -> None:
    """An infinite source followed by ``.limit(n)`` gives the first n items and stops."""
    assert source(itertools.count()).limit(5).run(backend=backend) == [0, 1, 2, 3, 4]
    assert (source(itertools.count()) >> times_2).limit(3).run(backend=backend) == [0, 2, 4]


# -- running: stream, iteration, wait_for_completion --


def test_pipeline_stream_yields_outputs_in_order(backend: Backend) -> None:
    """stream() yields every output, in order."""
    stream = (source(range(20)) >> times_2.options(workers=2)).stream(backend=backend)
    assert_type(stream, "Iterator[int]")
    assert list(stream) == [2 * x for x in range(20)]


def test_pipeline_stream_break_early_stops_infinite_pipeline(backend: Backend) -> None:
    """Leaving a stream() loop early over an infinite source ends the pipeline cleanly."""
    got: list[int] = []
    for x in (source(itertools.count()) >> times_2.options(workers=2)).stream(backend=backend):
        got.append(x)
        if len(got) == 3:
            break
    assert got == [0, 2, 4]


def test_pipeline_stream_close_stops_pipeline(backend: Backend) -> None:
    """Closing a stream() iterator after a few items ends the pipeline, which can then run again."""
    pipeline = source(range(1000)) >> add_one
    stream = pipeline.stream(backend=backend)
    assert [next(stream), next(stream)] == [1, 2]
    assert isinstance(stream, Generator)
    stream.close()
    assert pipeline.limit(3).run(backend=backend) == [1, 2, 3]


def test_pipeline_iteration_yields_outputs_in_order(default_backend: Backend) -> None:
    """``list(pipeline)`` iterates the outputs, in order."""
    assert list(source(range(5)) >> to_str) == ["0", "1", "2", "3", "4"]


def test_pipeline_iteration_break_early(default_backend: Backend) -> None:
    """Breaking out of ``for x in pipeline`` over an infinite source ends the pipeline."""
    got: list[int] = []
    for x in source(itertools.count()) >> add_one:
        got.append(x)
        if x == 4:
            break
    assert got == [1, 2, 3, 4]


def test_pipeline_wait_for_completion_runs_sinks(backend: Backend, tmp_path: Path) -> None:
    """wait_for_completion() runs the pipeline to the end, every sink call done when it returns."""
    out = tmp_path / "out"

    def save(x: int) -> None:
        _record(out, str(x))

    pipeline = source(range(5)) >> times_2 >> stage(save)
    pipeline.wait_for_completion(backend=backend)
    assert sorted(_lines(out)) == ["0", "2", "4", "6", "8"]  # several workers: any order


def test_pipeline_run_twice_gives_same_results(backend: Backend) -> None:
    """A pipeline over a re-iterable source can be run several times with the same results."""
    pipeline = source(range(4)) >> times_2 >> to_str
    assert pipeline.run(backend=backend) == ["0", "2", "4", "6"]
    assert pipeline.run(backend=backend) == ["0", "2", "4", "6"]
