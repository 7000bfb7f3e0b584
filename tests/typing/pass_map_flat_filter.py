"""Map, flat and filter stages: the decorators give precise ``Stage[In, Out]`` types."""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import TypeGuard, assert_type

from typing_extensions import TypeIs

from olympipe_typed import Pipeline, Stage, filter_stage, flat_stage, source, stage


@stage
def times_2(x: int) -> int:
    return x * 2


@stage(workers=4, name="label")
def to_label(x: int) -> str:
    return f"item-{x}"


@flat_stage
def words(line: str) -> list[str]:
    return line.split()


@flat_stage(workers=2, ordered=False)
def chars(word: str) -> tuple[str, ...]:
    return tuple(word)


@filter_stage
def even(x: int) -> bool:
    return x % 2 == 0


@filter_stage(name="non-empty")
def non_empty(s: str) -> bool:
    return bool(s)


def _is_int(x: object) -> TypeIs[int]:
    return isinstance(x, int)


def _is_str(x: object) -> TypeGuard[str]:
    return isinstance(x, str)


@filter_stage
def only_ints(x: int | str) -> TypeIs[int]:
    return isinstance(x, int)


is_int = filter_stage(_is_int)
is_str = filter_stage(_is_str)
upper = stage(str.upper)
split_words = flat_stage(str.split)

assert_type(times_2, Stage[int, int])
assert_type(to_label, Stage[int, str])
assert_type(words, Stage[str, str, list[str]])
assert_type(chars, Stage[str, str, Iterable[str]])
assert_type(even, Stage[int, int, bool])
assert_type(non_empty, Stage[str, str, bool])
assert_type(is_int, Stage[object, int, bool])
assert_type(is_str, Stage[object, str, bool])
assert_type(only_ints, Stage[int | str, int, bool])
assert_type(upper, Stage[str, str])
assert_type(split_words, Stage[str, str, list[str]])
assert_type(stage(len), Stage[Sized, int])
assert_type(filter_stage(name="digits")(str.isdigit), Stage[str, str, bool])


def check() -> None:
    """Wire the stages into pipelines (built, never run)."""
    assert_type(source(range(10)) >> times_2, Pipeline[int])
    assert_type(source(range(10)) >> times_2 >> to_label, Pipeline[str])
    assert_type(source(["a b", "c"]) >> words, Pipeline[str])
    assert_type(source(["a b", "c"]) >> words >> chars >> non_empty, Pipeline[str])
    assert_type(source(range(10)) >> even >> to_label, Pipeline[str])

    mixed: list[int | str] = [1, "a", 2]
    assert_type(source(mixed), Pipeline[int | str])
    assert_type(source(mixed) >> is_int, Pipeline[int])
    assert_type(source(mixed) >> is_int >> times_2, Pipeline[int])
    assert_type(source(mixed) >> is_str >> upper, Pipeline[str])
    assert_type(source(mixed) >> only_ints >> to_label, Pipeline[str])
    anything: list[object] = [1, "a", None]
    assert_type(source(anything) >> is_str >> words, Pipeline[str])
