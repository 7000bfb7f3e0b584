"""Conformance tests for olympipe 2.2's API beyond section 5 (API.md section 10), every backend.

``task(on_error=)``, ``checkpoint``, ``create_pipe`` with ``GenericPipe`` and the built-in step
classes, ``debug_graph=`` and ``print_graph``, ``Pipeline.queues``, ``are_pipelines_running``,
``PipelineExecutionError``; and that a step given an object's method keeps its state in one
worker, as olympipe's steps do. tests/test_olympict.py runs a real olympipe-based library.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from filelog import lines as _lines
from filelog import record as _record

from olympipe_typed import (
    Pipeline,
    PipelineError,
    PipelineExecutionError,
    SourceError,
    StageError,
    WorkerDied,
)
from olympipe_typed.olympipe import (
    BatchPipe,
    ExplodePipe,
    FilterPipe,
    GatherPipe,
    GenericPipe,
    LimitPipe,
    ReducePipe,
    SplitterPipe,
    TaskPipe,
)
from olympipe_typed.olympipe.pipes.generic import _SKIP

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(60)


def fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(x)
    return x


def drop(item: int, exc: Exception) -> None:
    return None


def negate(item: int, exc: Exception) -> int:
    assert isinstance(exc, ValueError)
    return -item


def broken_handler(item: int, exc: Exception) -> int:
    msg = "the handler itself"
    raise KeyError(msg)


# -- task(on_error=) --


def test_on_error_returning_none_drops_the_item(backend: Backend) -> None:
    """olympipe's on_error: None drops the failed item; the others go on, in order."""
    out = Pipeline(range(10)).task(fail_on_odd, on_error=drop).wait_for_result(backend=backend)
    assert out == [0, 2, 4, 6, 8]


def test_on_error_result_replaces_the_item_in_order(backend: Backend) -> None:
    """What on_error returns takes the failed item's place, with several workers too."""
    p = Pipeline(range(40)).task(fail_on_odd, count=2, on_error=negate)
    assert p.wait_for_result(backend=backend) == [x if x % 2 == 0 else -x for x in range(40)]


def test_an_on_error_handler_that_raises_names_the_stage_and_item(backend: Backend) -> None:
    """A failing handler stops the run with a StageError on that item, its error the cause."""
    p = Pipeline([2, 4, 5, 6]).task(fail_on_odd, on_error=broken_handler)
    with pytest.raises(StageError, match=r"stage 'fail_on_odd' failed on item 5: its on_error"):
        p.wait_for_result(backend=backend)


def test_on_error_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_error must be a callable or None"):
        Pipeline([1]).task(abs, on_error="skip")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# -- checkpoint --


def collect(item: int, acc: list[int]) -> list[int]:
    return [*acc, item]


def backwards(acc: list[int]) -> Iterator[int]:
    return reversed(acc)


def test_checkpoint_emits_the_state_s_items_once_the_flow_ends(backend: Backend) -> None:
    start: list[int] = []
    out = Pipeline(range(6)).checkpoint(start, collect, backwards).wait_for_result(backend=backend)
    assert out == [5, 4, 3, 2, 1, 0]


def test_checkpoint_over_nothing_emits_the_initial_state_s_items(backend: Backend) -> None:
    empty: list[int] = []
    out = Pipeline(empty).checkpoint([7, 8], collect, backwards).wait_for_result(backend=backend)
    assert out == [8, 7]


# -- create_pipe --


class Scale(GenericPipe[int, int]):
    """A step in olympipe's style: olympipe's constructor parameters, then its own."""

    def __init__(
        self,
        father_process_dag: object,
        source: object,
        target: object,
        factor: int,
        log: Path,
        auto_start: bool = True,
    ) -> None:
        super().__init__(father_process_dag, source, target, auto_start)
        self.factor = factor
        _record(log, "built")

    def _perform_task(self, data: int) -> int:
        return _SKIP if data % 5 == 0 else data * self.factor


def test_create_pipe_builds_the_step_in_each_worker(backend: Backend, tmp_path: Path) -> None:
    """Each worker builds one instance; _SKIP sends nothing on; order is kept."""
    log = tmp_path / "log"
    p = Pipeline(range(30)).create_pipe(Scale, factor=3, log=log, count=2)
    assert p.wait_for_result(backend=backend) == [3 * x for x in range(30) if x % 5]
    assert 1 <= len(_lines(log)) <= 2


def add(x: int, total: int) -> int:
    return total + x


def above_2(x: int) -> bool:
    return x > 2


def untyped(cls: type[GenericPipe[Any, Any]]) -> type[GenericPipe[Any, Any]]:
    """A built-in step class, whose items' types its keyword arguments decide."""
    return cls


def test_create_pipe_with_built_in_step_classes(backend: Backend) -> None:
    """The built-in classes add their Pipeline method, olympipe's keyword arguments and all."""
    p = (
        Pipeline([[1, 2], [3], [4, 5, 6]])
        .create_pipe(untyped(ExplodePipe), explode_function=None)
        .create_pipe(untyped(TaskPipe), task=fail_on_odd, on_error=drop, count=2)
        .create_pipe(untyped(FilterPipe), keep_if_true=above_2)
        .create_pipe(untyped(BatchPipe), batch_size=1)
        .create_pipe(untyped(LimitPipe), packet_limit=1)
    )
    assert p.wait_for_result(backend=backend) == [[4]]
    total = Pipeline(range(5)).create_pipe(untyped(ReducePipe), accumulator=0, reducer=add)
    assert total.wait_for_result(backend=backend) == [10]


def test_create_pipe_refuses_what_it_cannot_add() -> None:
    p = Pipeline([1])
    with pytest.raises(TypeError, match=r"added by Pipeline.gather\(...\), not by create_pipe"):
        p.create_pipe(GatherPipe)
    with pytest.raises(TypeError, match=r"added by Pipeline.split\(...\), not by create_pipe"):
        p.create_pipe(SplitterPipe)
    with pytest.raises(TypeError, match="subclass of GenericPipe"):
        p.create_pipe(int)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    class Batches(BatchPipe[int, int]):
        pass

    with pytest.raises(TypeError, match="extend GenericPipe or TaskPipe"):
        p.create_pipe(Batches)


# -- a step with state keeps it in one worker --


class EveryThird:
    def __init__(self) -> None:
        self.seen = 0

    def keep(self, _item: object) -> bool:
        self.seen += 1
        return (self.seen - 1) % 3 == 0


def test_a_method_of_an_object_keeps_its_state_in_one_worker(backend: Backend) -> None:
    """olympipe runs a filter in one process, and libraries count on it (olympict's frame
    sampler); the planner must not split such a step over workers with a copy each."""
    out = Pipeline(range(300)).filter(EveryThird().keep).wait_for_result(backend=backend)
    assert out == list(range(0, 300, 3))


# -- debug_graph, print_graph, cleanup --


def test_debug_graph_and_print_graph_write_the_dot_file(tmp_path: Path) -> None:
    p = Pipeline(range(3)).task(fail_on_odd, on_error=drop)
    assert p.wait_for_result(str(tmp_path / "a.dot"), backend="inline") == [0, 2]
    p.print_graph(tmp_path / "b.dot")
    a = (tmp_path / "a.dot").read_text()
    assert a == (tmp_path / "b.dot").read_text() == p.to_dot()
    assert "fail_on_odd" in a
    other = p.task(str)
    p.wait_for_results([other], tmp_path / "c.dot", backend="inline")
    assert "str" in (tmp_path / "c.dot").read_text()
    p.wait_for_completion(None, tmp_path / "d.dot", backend="inline")
    assert (tmp_path / "d.dot").read_text() == a
    p.cleanup()  # nothing to do: the runs above stopped their processes


# -- Pipeline.queues, are_pipelines_running --


def slow(x: int) -> int:
    time.sleep(0.01)
    return x


@pytest.mark.parametrize("live", ["process", "thread"])
def test_queues_show_a_run_while_it_goes(live: Backend) -> None:
    """Another thread reads each stage's counts while the run goes, and the final ones after."""
    p = Pipeline(range(200)).task(slow).task(slow)
    assert p.queues == {}
    assert not Pipeline.are_pipelines_running([p])
    seen: list[tuple[int, int, bool]] = []
    runner = threading.Thread(target=p.wait_for_result, kwargs={"backend": live})
    runner.start()
    deadline = time.monotonic() + 20
    while runner.is_alive() and time.monotonic() < deadline:
        queues = p.queues
        if queues:
            first = queues["slow"]
            seen.append((first.items_in, first.qsize(), first.is_closed))
            running = Pipeline.are_pipelines_running([p])
            assert running or not runner.is_alive()
        time.sleep(0.05)
    runner.join()
    assert any(0 < items_in < 200 and not closed for items_in, _, closed in seen), seen
    assert any(waiting > 0 for _, waiting, _ in seen), seen
    final = {name: q.snapshot() for name, q in p.queues.items()}
    assert final == {
        name: {"name": name, "size": 0, "items_in": 200, "items_out": 200, "closed": True}
        for name in ("slow", "slow#2")
    }
    assert not Pipeline.are_pipelines_running([p])


def test_queues_after_a_run(backend: Backend) -> None:
    p = Pipeline(range(10)).filter(lambda x: x % 2 == 0)
    p.wait_for_result(backend=backend)
    (q,) = p.queues.values()
    assert (q.items_in, q.items_out, q.qsize(), q.empty(), q.is_closed) == (10, 5, 0, True, True)
    with pytest.raises(TypeError):
        p.queues["x"] = q  # type: ignore[index]  # pyright: ignore[reportIndexIssue]


# -- errors --


def test_what_a_failed_run_raises_is_a_pipeline_execution_error() -> None:
    """olympipe's one run error is a RuntimeError named PipelineExecutionError, with a list
    of error texts: code that catches either keeps catching ours, which keep their type."""
    for cls in (StageError, WorkerDied, SourceError):
        assert issubclass(cls, PipelineExecutionError)
    assert issubclass(PipelineExecutionError, PipelineError)
    assert issubclass(PipelineExecutionError, RuntimeError)
    with pytest.raises(RuntimeError) as info:
        Pipeline([1, 3]).task(fail_on_odd).wait_for_result(backend="inline")
    assert isinstance(info.value, StageError)
    assert isinstance(info.value, PipelineExecutionError)
    assert info.value.errors == [str(info.value)]
    assert "ValueError: 1" in info.value.errors[0]


def test_olympipe_s_monitoring_arguments_are_accepted() -> None:
    p = Pipeline([1, 2], monitoring=True, inspect_messages=True).task(abs)
    assert p.wait_for_result(backend="inline") == [1, 2]
    assert p.queues["abs"].items_out == 2
