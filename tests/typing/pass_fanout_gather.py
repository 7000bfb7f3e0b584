"""Fan-out ``Stage | Stage`` merges outputs as a union; ``Pipeline | Pipeline`` gathers flows."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline, Stage, flat_stage, source, stage


@stage
def times_2(x: int) -> int:
    return x * 2


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


@stage
def to_float(x: int) -> float:
    return x / 2


@flat_stage
def repeat(x: int) -> list[bytes]:
    return [b"x"] * x


@stage
def describe(x: object) -> str:
    return repr(x)


both = times_2 | to_label
three = times_2 | to_label | repeat

assert_type(both, Stage[int, int | str])
assert_type(three, Stage[int, int | str | bytes])
assert_type(times_2 | to_float, Stage[int, int | float])
assert_type(both >> describe, Stage[int, str])
assert_type(times_2 >> (times_2 | to_label), Stage[int, int | str])
# A branch that accepts more (object) still fans out from int items.
assert_type(times_2 | describe, Stage[int, int | str])


def check() -> None:
    """Fan-out inside pipelines, and gathering pipelines with ``|`` (built, never run)."""
    numbers = source(range(5))
    assert_type(numbers >> both, Pipeline[int | str])
    assert_type(numbers >> three >> describe, Pipeline[str])
    assert_type(numbers >> (to_label | to_label), Pipeline[str])

    labels = source(["a", "b"])
    assert_type(numbers | labels, Pipeline[int | str])
    assert_type(numbers | numbers, Pipeline[int])
    assert_type(numbers | labels | source([b"z"]), Pipeline[int | str | bytes])
    assert_type((numbers | labels) >> describe, Pipeline[str])
    assert_type((numbers >> times_2) | (numbers >> to_label), Pipeline[int | str])
