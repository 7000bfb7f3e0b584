"""Conformance tests for the olympipe-compatible fluent API (API.md section 5)."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections import Counter
from typing import TYPE_CHECKING, assert_type

import pytest
from filelog import lines as _lines
from filelog import record as _record

from olympipe_typed import CacheEnvelope, Pipeline, batch, run_all, source, stage

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(60)


# -- helpers that work across processes: state lives in files, not in globals --


def times_2(x: int) -> int:
    """Double an int."""
    return x * 2


@stage
def to_label(x: int) -> str:
    """An int as a label."""
    return f"item-{x}"


class Multiplier:
    """A class for class_task that logs its construction and its shutdown to a file."""

    def __init__(self, log: Path, factor: int, offset: int = 0) -> None:
        self.log = log
        self.factor = factor
        self.offset = offset
        _record(log, "init")

    def apply(self, x: int) -> int:
        return x * self.factor + self.offset

    def shutdown(self) -> None:
        _record(self.log, "close")


# -- task, filter, explode --


def test_pipeline_task_applies_function_in_order(backend: Backend) -> None:
    """task(fn) applies fn to each item, keeping order."""
    pipeline = Pipeline(range(5)).task(times_2)
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [0, 2, 4, 6, 8]


def test_pipeline_task_with_count_keeps_order(backend: Backend) -> None:
    """task(fn, count=3) runs three workers and still gives outputs in input order."""
    pipeline = Pipeline(range(60)).task(lambda x: x * 3, count=3).task(str)
    assert pipeline.run(backend=backend) == [str(3 * x) for x in range(60)]


def test_pipeline_task_accepts_closures(backend: Backend) -> None:
    """task() accepts a closure over local variables."""
    offset = 100

    def shift(x: int) -> int:
        return x + offset

    assert Pipeline([1, 2]).task(shift).run(backend=backend) == [101, 102]


def test_pipeline_filter_keeps_items_where_true(backend: Backend) -> None:
    """filter(fn) keeps the items for which fn is true, in order."""
    assert Pipeline(range(10)).filter(lambda x: x % 3 == 0).run(backend=backend) == [0, 3, 6, 9]


def test_pipeline_filter_without_function_drops_none(backend: Backend) -> None:
    """filter() with no function drops None items and narrows away None."""
    data: list[int | None] = [1, None, 0, None, 3]
    pipeline = Pipeline(data).filter()
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [1, 0, 3]


def test_pipeline_explode_with_function_flattens_results(backend: Backend) -> None:
    """explode(fn) replaces each item by the items of fn(item), in order."""
    pipeline = Pipeline(["a b", "", "c d e"]).explode(lambda s: s.split())
    assert_type(pipeline, Pipeline[str])
    assert pipeline.run(backend=backend) == ["a", "b", "c", "d", "e"]


def test_pipeline_explode_without_function_flattens_items(backend: Backend) -> None:
    """explode() with no function replaces each iterable item by its elements."""
    data = [[1, 2], [], [3]]
    pipeline = Pipeline(data).explode()
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [1, 2, 3]


# -- batch, temporal_batch, reduce --


def test_pipeline_batch_keeps_incomplete_batch_by_default(backend: Backend) -> None:
    """batch() groups items by two and keeps the last short group."""
    pipeline = Pipeline(range(5)).batch()
    assert_type(pipeline, Pipeline[list[int]])
    assert pipeline.run(backend=backend) == [[0, 1], [2, 3], [4]]


def test_pipeline_batch_drops_incomplete_batch(backend: Backend) -> None:
    """batch(n, keep_incomplete_batch=False) drops the last short group."""
    pipeline = Pipeline(range(8)).batch(3, keep_incomplete_batch=False)
    assert pipeline.run(backend=backend) == [[0, 1, 2], [3, 4, 5]]


def test_pipeline_batch_size_keyword(backend: Backend) -> None:
    """batch(batch_size=n, keep_incomplete_batch=True) groups by n and keeps the short group."""
    pipeline = Pipeline(range(5)).batch(batch_size=4, keep_incomplete_batch=True)
    assert pipeline.run(backend=backend) == [[0, 1, 2, 3], [4]]


def test_pipeline_batch_rejects_zero_size() -> None:
    """batch(0) raises ValueError naming batch_size and its value."""
    with pytest.raises(ValueError, match=r"\bbatch_size\b.*\b0\b"):
        Pipeline(range(3)).batch(0)


def _two_bursts() -> Iterator[int]:
    """A burst of 25 items, a pause much longer than the batch interval, then 5 more items."""
    yield from range(25)
    time.sleep(1.2)
    yield from range(25, 30)


def test_pipeline_temporal_batch_groups_items_by_arrival_time(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """temporal_batch(seconds) groups the items that arrive within each interval."""
    pipeline = Pipeline(_two_bursts()).temporal_batch(0.4)
    assert_type(pipeline, Pipeline[list[int]])
    assert pipeline.run(backend=backend) == [list(range(25)), list(range(25, 30))]


def test_pipeline_reduce_calls_reducer_with_item_then_accumulator(backend: Backend) -> None:
    """reduce(acc, reducer) folds with reducer(item, acc) and emits the result once."""
    pipeline = Pipeline([1, 2, 3]).reduce(0, lambda item, acc: acc * 10 + item)
    assert_type(pipeline, Pipeline[int])
    assert pipeline.run(backend=backend) == [123]


def test_pipeline_reduce_list_accumulator(backend: Backend) -> None:
    """reduce() with a list accumulator collects the items in order."""
    start: list[int] = []
    pipeline = Pipeline(range(4)).reduce(start, lambda item, acc: [*acc, item])
    assert pipeline.run(backend=backend) == [[0, 1, 2, 3]]


def test_pipeline_reduce_empty_emits_accumulator(backend: Backend) -> None:
    """reduce() over no items emits the initial accumulator."""
    empty: list[int] = []
    assert Pipeline(empty).reduce(7, lambda item, acc: acc + item).run(backend=backend) == [7]


# -- class_task --


def test_pipeline_class_task_builds_instance_once_and_calls_close_method(
    backend: Backend, tmp_path: Path
) -> None:
    """class_task builds the class with class_args and class_kwargs once, maps the method, then calls close_method."""
    log = tmp_path / "log"
    pipeline = Pipeline(range(4)).class_task(
        Multiplier,
        Multiplier.apply,
        class_args=[log, 3],
        close_method=Multiplier.shutdown,
        class_kwargs={"offset": 1},
    )
    assert_type(pipeline, Pipeline[int])
    assert _lines(log) == []
    assert pipeline.run(backend=backend) == [1, 4, 7, 10]
    assert _lines(log) == ["init", "close"]


def test_pipeline_class_task_with_count_keeps_order(backend: Backend, tmp_path: Path) -> None:
    """class_task with count=2 keeps order and closes every instance it built."""
    log = tmp_path / "log"
    pipeline = Pipeline(range(30)).class_task(
        Multiplier, Multiplier.apply, [log, 2], Multiplier.shutdown, count=2
    )
    assert pipeline.run(backend=backend) == [2 * x for x in range(30)]
    lines = _lines(log)
    assert 1 <= lines.count("init") <= 2
    assert lines.count("close") == lines.count("init")


# -- limit, timeout --


def test_pipeline_limit_keeps_first_items(backend: Backend) -> None:
    """limit(n) keeps the first n items."""
    assert Pipeline(range(100)).task(times_2).limit(3).run(backend=backend) == [0, 2, 4]


def test_pipeline_limit_larger_than_source(backend: Backend) -> None:
    """limit(n) with fewer than n items keeps them all."""
    assert Pipeline(range(2)).limit(5).run(backend=backend) == [0, 1]


def test_pipeline_limit_zero_gives_nothing(backend: Backend) -> None:
    """limit(0) gives no item, even from an infinite source."""
    assert Pipeline(itertools.count()).limit(0).run(backend=backend) == []


def test_pipeline_limit_stops_infinite_source(backend: Backend) -> None:
    """limit(n) after an infinite generator ends the pipeline after n items."""
    assert Pipeline(itertools.count(10)).task(times_2).limit(4).run(backend=backend) == [
        20,
        22,
        24,
        26,
    ]


def _stall_after_three(seconds: float) -> Iterator[int]:
    """Three items, then a stall of ``seconds``, then one more item."""
    yield from (0, 1, 2)
    time.sleep(seconds)
    yield 3


def test_pipeline_timeout_ends_stream_after_inactivity(backend: Backend) -> None:
    """timeout(seconds) ends the stream when no item arrives for that long; later items are dropped."""
    pipeline = Pipeline(_stall_after_three(3.0)).timeout(1.0)
    assert pipeline.run(backend=backend) == [0, 1, 2]


def test_pipeline_timeout_keeps_items_that_arrive_in_time(backend: Backend) -> None:
    """timeout(seconds) passes every item when the source never stalls that long."""
    assert Pipeline(range(5)).task(times_2).timeout(5.0).run(backend=backend) == [0, 2, 4, 6, 8]


def test_pipeline_timeout_returns_promptly_while_source_stalls(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """timeout(seconds) ends the run soon after the inactivity limit, not when the stalled source resumes."""
    if backend == "inline":
        # One thread cannot stop waiting on a generator that blocks: inline measures the gaps.
        reason = "inline runs the source in the caller's thread; it ends when the source resumes"
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    pipeline = Pipeline(_stall_after_three(4.5)).timeout(1.0)
    started = time.monotonic()
    assert pipeline.run(backend=backend) == [0, 1, 2]
    assert time.monotonic() - started < 3.0


# -- split, gather, debug --


def test_pipeline_split_gives_typed_branches_of_one_shared_split(
    backend: Backend, tmp_path: Path
) -> None:
    """split(fn) gives one typed pipeline per tuple slot; fn runs once per item for all branches."""
    log = tmp_path / "log"

    def parity(x: int) -> tuple[int | None, str | None]:
        _record(log, str(x))
        return (x, None) if x % 2 == 0 else (None, f"odd {x}")

    evens, odds = Pipeline(range(5)).split(parity)
    assert_type(evens, Pipeline[int])
    assert_type(odds, Pipeline[str])
    assert run_all(evens.task(times_2), odds, backend=backend) == ([0, 4, 8], ["odd 1", "odd 3"])
    assert sorted(_lines(log)) == ["0", "1", "2", "3", "4"]


def test_pipeline_split_branch_runs_alone(backend: Backend) -> None:
    """One branch of a split runs on its own and gives its slot's non-None values."""
    small, big = Pipeline(range(6)).split(lambda x: (x, None) if x < 2 else (None, x), n=2)
    assert small.run(backend=backend) == [0, 1]
    assert big.run(backend=backend) == [2, 3, 4, 5]


def test_pipeline_split_with_n_and_three_branches(backend: Backend) -> None:
    """split(fn, n) with three slots routes each value to its branch; a slot may hold every item."""
    a, b, c = Pipeline(range(4)).split(lambda x: (x, x if x % 2 else None, -x), n=3)
    assert run_all(a, b, c, backend=backend) == ([0, 1, 2, 3], [1, 3], [0, -1, -2, -3])


def test_pipeline_gather_merges_flows(backend: Backend) -> None:
    """gather(*others) yields every item of every flow, each flow's items in their own order."""
    gathered = Pipeline([1, 2, 3]).gather(Pipeline([10, 20]), Pipeline([100]))
    assert_type(gathered, Pipeline[int])
    result = gathered.run(backend=backend)
    assert Counter(result) == Counter([1, 2, 3, 10, 20, 100])
    assert [x for x in result if x < 10] == [1, 2, 3]
    assert [x for x in result if 10 <= x < 100] == [10, 20]


def test_pipeline_debug_prints_items_unchanged(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    """debug() prints each item as it passes and yields it unchanged."""
    if backend == "process" and multiprocessing.get_start_method() == "forkserver":
        pytest.skip("forkserver workers print to the stdout of an earlier test; fork, spawn check")
    assert Pipeline(["alpha", "beta"]).debug().run(backend=backend) == ["alpha", "beta"]
    out = capfd.readouterr().out
    assert "'alpha'" in out
    assert "'beta'" in out
    assert out.index("'alpha'") < out.index("'beta'")


# -- cached_task --


def test_pipeline_cached_task_serves_second_run_from_cache(
    backend: Backend, tmp_path: Path
) -> None:
    """cached_task computes each distinct item once across runs; uncache() gives the results."""
    calls = tmp_path / "calls"
    cache = tmp_path / "cache"

    def square(x: int) -> int:
        _record(calls, str(x))
        return x * x

    first = Pipeline([1, 2, 3]).cached_task(square, cache)
    assert_type(first, Pipeline[CacheEnvelope[int]])
    assert [e.data for e in first.run(backend=backend)] == [1, 4, 9]
    assert sorted(_lines(calls)) == ["1", "2", "3"]
    second = Pipeline([3, 1, 4, 2]).cached_task(square, cache).uncache()
    assert_type(second, Pipeline[int])
    assert second.run(backend=backend) == [9, 1, 16, 4]
    assert sorted(_lines(calls)) == ["1", "2", "3", "4"]


def test_pipeline_cached_task_with_count_keeps_order(backend: Backend, tmp_path: Path) -> None:
    """cached_task with count=2 keeps input order."""
    pipeline = Pipeline(range(20)).cached_task(times_2, tmp_path / "cache", count=2).uncache()
    assert pipeline.run(backend=backend) == [2 * x for x in range(20)]
    assert pipeline.run(backend=backend) == [2 * x for x in range(20)]


# -- start and the wait_* family --


def test_pipeline_start_returns_the_pipeline() -> None:
    """start() returns the pipeline itself, for olympipe's ``.start().wait_...()`` chains."""
    pipeline = Pipeline(range(3)).task(times_2)
    assert pipeline.start() is pipeline


def test_pipeline_wait_for_result_runs_and_returns_outputs(default_backend: Backend) -> None:
    """wait_for_result() runs the pipeline and returns its outputs, as in olympipe's README."""
    res = Pipeline(range(10)).task(times_2).wait_for_result()
    assert_type(res, list[int])
    assert res == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert Pipeline([1]).task(times_2).start().wait_for_result() == [2]


def test_pipeline_wait_for_results_gives_one_list_per_pipeline(default_backend: Backend) -> None:
    """wait_for_results(others) runs this pipeline and the others, giving one list each."""
    base = Pipeline(range(4))
    doubled = base.task(times_2)
    odd = base.filter(lambda x: x % 2 == 1)
    assert doubled.wait_for_results([odd]) == [[0, 2, 4, 6], [1, 3]]
    assert doubled.wait_for_results() == [[0, 2, 4, 6]]


def test_pipeline_wait_and_reduce_returns_final_accumulator(default_backend: Backend) -> None:
    """wait_and_reduce(acc, reducer) runs and returns the fold of the outputs with reducer(item, acc)."""
    total = Pipeline(range(5)).task(times_2).wait_and_reduce(0, lambda item, acc: acc + item)
    assert_type(total, int)
    assert total == 20
    digits = Pipeline([1, 2, 3]).wait_and_reduce("", lambda item, acc: acc + str(item))
    assert digits == "123"


def test_pipeline_wait_for_all_results_runs_pipelines_together(default_backend: Backend) -> None:
    """Pipeline.wait_for_all_results(pipes) gives one list of results per pipeline, in order."""
    results = Pipeline.wait_for_all_results([Pipeline([1, 2]).task(times_2), Pipeline([5])])
    assert results == [[2, 4], [5]]


def test_pipeline_wait_for_completion_discards_outputs(backend: Backend, tmp_path: Path) -> None:
    """wait_for_completion() runs every item through the pipeline's sinks."""
    out = tmp_path / "out"
    Pipeline(range(3)).task(lambda x: _record(out, str(x))).wait_for_completion(backend=backend)
    assert sorted(_lines(out)) == ["0", "1", "2"]  # on several workers: in any order


# -- olympipe programs and mixing styles --


def test_pipeline_article_example_siblings_each_get_every_item(
    default_backend: Backend, tmp_path: Path
) -> None:
    """Siblings ``p.filter(a)`` and ``p.filter(b)`` of one pipeline each receive every item of p, which runs once."""
    log = tmp_path / "log"

    def is_valid(x: int) -> bool:
        return x % 3 != 0

    def seen(x: int) -> int:
        _record(log, str(x))
        return x

    p = Pipeline(range(10)).task(seen)
    ok = p.filter(is_valid)
    bad = p.filter(lambda x: not is_valid(x))
    assert Pipeline.wait_for_all_results([bad, ok]) == [[0, 3, 6, 9], [1, 2, 4, 5, 7, 8]]
    assert sorted(_lines(log), key=int) == [str(x) for x in range(10)]


def test_pipeline_article_example_separate_pipelines_over_same_data(
    default_backend: Backend,
) -> None:
    """Two pipelines built over the same list each read all of it."""
    data = list(range(6))

    def is_valid(x: int) -> bool:
        return x > 2

    ok = Pipeline(data).filter(is_valid)
    bad = Pipeline(data).filter(lambda x: not is_valid(x))
    assert Pipeline.wait_for_all_results([bad, ok]) == [[0, 1, 2], [3, 4, 5]]


def test_pipeline_fluent_then_rshift_stage(backend: Backend) -> None:
    """``Pipeline(data).task(f) >> my_stage`` mixes the fluent API with stages."""
    pipeline = Pipeline(range(3)).task(times_2) >> to_label
    assert_type(pipeline, Pipeline[str])
    assert pipeline.run(backend=backend) == ["item-0", "item-2", "item-4"]


def test_pipeline_rshift_then_fluent_batch(backend: Backend) -> None:
    """``(source(data) >> s).batch(8)`` mixes stages with the fluent API."""
    pipeline = (source(range(10)) >> to_label).batch(8)
    assert_type(pipeline, Pipeline[list[str]])
    assert pipeline.run(backend=backend) == [
        [f"item-{x}" for x in range(8)],
        ["item-8", "item-9"],
    ]


def test_pipeline_fluent_and_stage_batch_agree(backend: Backend) -> None:
    """``.batch(n)`` and ``>> batch(n)`` group items the same way."""
    fluent = Pipeline(range(5)).batch(2).run(backend=backend)
    staged = (source(range(5)) >> batch(2)).run(backend=backend)
    assert fluent == staged == [[0, 1], [2, 3], [4]]
