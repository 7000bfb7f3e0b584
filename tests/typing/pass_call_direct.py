"""Calling a stage object directly calls the underlying function, with its types."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Stage, stage


@stage
def times_2(x: int) -> int:
    return x * 2


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


def unit_tests() -> None:
    """What a stage library's unit tests look like (never run here)."""
    assert_type(times_2(3), int)
    assert_type(to_label(3), str)
    assert_type((times_2 >> to_label)(3), str)
    assert_type((times_2 >> times_2 >> times_2)(1), int)
    assert_type(times_2.options(workers=4)(2), int)
    assert_type(stage(str.upper)("a"), str)
    assert_type(stage(len)("abc"), int)


def helper_in_a_test(s: Stage[int, str]) -> str:
    """A Stage is a callable of its input type."""
    return s(1)
