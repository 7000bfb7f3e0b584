"""``batch(n)`` behaves as ``Stage[T, list[T]]`` for whatever ``T`` it is wired after."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Batch, Pipeline, Stage, batch, source, stage


@stage
def times_2(x: int) -> int:
    return x * 2


@stage
def total(xs: list[int]) -> int:
    return sum(xs)


@stage
def count_items(xs: list[object]) -> int:
    return len(xs)


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


assert_type(batch(2), Batch)
assert_type(batch(2, timeout=0.5, name="groups", queue_size=4), Batch)

# After a Stage: the composite's output is a list of the stage's output.
assert_type(times_2 >> batch(4), Stage[int, list[int]])
assert_type(to_label >> batch(4), Stage[int, list[str]])
assert_type(times_2 >> batch(4) >> total, Stage[int, int])
# Before a stage taking lists: the batch's item type comes from that stage.
assert_type(batch(4) >> total, Stage[int, int])
assert_type(batch(4) >> total >> to_label, Stage[int, str])
assert_type(batch(4) >> count_items, Stage[object, int])


def check() -> None:
    """Batch after a pipeline, after a stage, and before a list-taking stage (built, never run)."""
    numbers = source(range(10))
    assert_type(numbers >> batch(3), Pipeline[list[int]])
    assert_type(numbers >> batch(3) >> total, Pipeline[int])
    assert_type(numbers >> batch(3, timeout=0.1) >> total >> to_label, Pipeline[str])
    assert_type(numbers >> times_2 >> batch(3), Pipeline[list[int]])
    assert_type(numbers >> (times_2 >> batch(3)), Pipeline[list[int]])
    assert_type(numbers >> (batch(3) >> total), Pipeline[int])
    assert_type(numbers >> batch(2) >> batch(2), Pipeline[list[list[int]]])
    assert_type(numbers >> to_label >> batch(2), Pipeline[list[str]])
    # ``batch(n) >> stage`` takes its item type from the stage: ints fit a list[object] stage.
    # (Built inline as ``numbers >> (batch(3) >> count_items)``, mypy solves the batch's item
    # type from the outer ``>>`` as int and rejects it; pyright accepts. So name it first.)
    counted = batch(3) >> count_items
    assert_type(numbers >> counted, Pipeline[int])
