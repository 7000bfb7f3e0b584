"""Pipelines built with the fluent methods and with ``>>`` mix freely."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline, batch, run_all, source, stage


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


@stage
def total(xs: list[int]) -> int:
    return sum(xs)


def times_2(x: int) -> int:
    return x * 2


def is_short(s: str) -> bool:
    return len(s) < 7


def check() -> None:
    """Fluent then ``>>``, ``>>`` then fluent, and both mixed with ``|`` (built, never run)."""
    data = range(10)
    assert_type(Pipeline(data).task(times_2) >> to_label, Pipeline[str])
    assert_type((source(data) >> to_label).batch(8), Pipeline[list[str]])
    assert_type((source(data) >> to_label).filter(is_short).task(len), Pipeline[int])
    assert_type(Pipeline(data).batch(4) >> total >> to_label, Pipeline[str])
    assert_type(Pipeline(data) >> batch(4) >> total, Pipeline[int])
    assert_type((Pipeline(data) >> to_label).explode(), Pipeline[str])
    assert_type(Pipeline(data).gather(source(["a"])) >> stage(str), Pipeline[str])
    assert_type(Pipeline(data).task(times_2) | source(["x"]), Pipeline[int | str])
    left, right = Pipeline(data).split(lambda x: (x, to_label(x)))
    assert_type(left >> to_label, Pipeline[str])
    assert_type(right.task(len), Pipeline[int])
    assert_type(run_all(left, right), tuple[list[int], list[str]])
