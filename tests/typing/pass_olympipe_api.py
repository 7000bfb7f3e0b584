"""olympipe 2.2's API beyond the basics: on_error, checkpoint, create_pipe, queues, errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

import olympipe_typed.olympipe as olympipe
from olympipe_typed.olympipe import GenericPipe, Pipeline, PipelineExecutionError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from olympipe_typed.olympipe.pipes.cache import CacheEnvelope


def parse(text: str) -> int:
    return int(text)


def minus_one(item: str, exc: Exception) -> int | None:
    return None if item == "" else -1


def collect(item: int, acc: list[int]) -> list[int]:
    return [*acc, item]


def labels(acc: list[int]) -> Iterator[str]:
    return (f"#{x}" for x in acc)


class Half(GenericPipe[int, float]):
    def _perform_task(self, data: int) -> float:
        return data / 2


def check() -> None:
    """Each pipeline's type (built, never run)."""
    numbers = Pipeline(["1", "x", ""]).task(parse, on_error=minus_one)
    assert_type(numbers, Pipeline[int])
    assert_type(Pipeline(["1"]).task(parse, 2, None), Pipeline[int])
    start: list[int] = []
    assert_type(numbers.checkpoint(start, collect, labels), Pipeline[str])
    assert_type(numbers.create_pipe(Half, count=2), Pipeline[float])
    assert_type(numbers.cached_task(str, "cache").uncache(), Pipeline[str])
    envelopes: Pipeline[CacheEnvelope[str]] = numbers.cached_task(str, "cache")
    waiting: int = numbers.queues["parse"].qsize()
    results: list[int] = numbers.wait_for_result("graph.dot")
    both: list[list[int | str]] = numbers.wait_for_results([numbers.task(str)], "graph.dot")
    numbers.wait_for_completion(None, debug_graph="graph.dot")
    numbers.print_graph("graph.dot")
    running: bool = Pipeline.are_pipelines_running([numbers])
    error: type[RuntimeError] = PipelineExecutionError
    olympipe.enable_monitoring(inspect_messages=True)
    print(envelopes, waiting, results, both, running, error)
