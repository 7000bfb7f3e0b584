"""Running a pipeline: ``run``, ``stream``, iteration and ``wait_for_completion`` types."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import assert_type

from olympipe_typed import Pipeline, source, stage


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


def check() -> None:
    """Result types of the running methods (never called)."""
    pipeline = source(range(10)) >> to_label
    assert_type(pipeline.run(), list[str])
    assert_type(pipeline.run(backend="inline", progress=True, check_types=True), list[str])
    assert_type(pipeline.run(backend="thread"), list[str])
    assert_type(pipeline.run(backend="ray"), list[str])
    assert_type(pipeline.stream(), Iterator[str])
    assert_type(pipeline.stream(backend="process"), Iterator[str])
    for label in pipeline:
        assert_type(label, str)
    assert_type(pipeline.wait_for_completion(), None)
    labels: list[str] = pipeline.run()
    assert_type(labels, list[str])


def consume(p: Pipeline[object]) -> list[object]:
    """A Pipeline[str] is a Pipeline[object] (covariant), whose run() is a list[object]."""
    return p.run()


def results_as_sequence(p: Pipeline[str]) -> Sequence[object]:
    """run() is a list[T]: invariant, but it fits a covariant Sequence of a wider type."""
    return p.run()


def check_consume() -> None:
    """A Pipeline[str] argument where a Pipeline[object] is expected (never called)."""
    assert_type(consume(source(range(3)) >> to_label), list[object])
