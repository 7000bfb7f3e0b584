"""Fluent methods keep precise item types in the less obvious cases."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from olympipe_typed import CacheEnvelope, Pipeline, run_all, stage

if TYPE_CHECKING:
    from collections.abc import Iterator


def words(x: int) -> Iterator[str]:
    yield from str(x)


def keep_anything(x: object) -> bool:
    return x is not None


def maybe_half(x: int) -> float | None:
    return x / 2 if x % 2 == 0 else None


def collect(item: int, acc: list[int]) -> list[int]:
    return [*acc, item]


def count_by_parity(item: int, acc: dict[bool, int]) -> dict[bool, int]:
    return {**acc, item % 2 == 0: acc.get(item % 2 == 0, 0) + 1}


def route(x: int) -> tuple[int | None, str | None]:
    return (x, None) if x % 2 == 0 else (None, str(x))


def render(x: int) -> bytes:
    return str(x).encode()


@stage
def size(b: bytes) -> int:
    return len(b)


class Model:
    def __init__(self, path: str, *, scale: float = 1.0) -> None:
        self.path = path
        self.scale = scale

    def describe(self, x: object) -> str:
        return f"{self.path}: {x!r}"

    def total(self, xs: list[int]) -> float:
        return sum(xs) * self.scale

    def shutdown(self) -> bool:
        return True


class Tuned(Model):
    def total(self, xs: list[int]) -> float:
        return sum(xs) * 2.0


def check_filter_and_explode() -> None:
    """filter() narrows away None; explode keeps the element type."""
    p = Pipeline(range(10))
    assert_type(p.filter(), Pipeline[int])
    assert_type(p.filter(keep_anything), Pipeline[int])
    assert_type(p.task(maybe_half).filter(), Pipeline[float])
    assert_type(p.task(maybe_half).filter().task(round), Pipeline[int])
    assert_type(Pipeline([1, None, 3]).filter(), Pipeline[int])
    assert_type(p.explode(words), Pipeline[str])
    assert_type(Pipeline([{"a": 1}]).explode(), Pipeline[str])
    assert_type(Pipeline([b"ab"]).explode(), Pipeline[int])
    assert_type(p.batch(4).explode(), Pipeline[int])
    assert_type(p.batch(4).explode().batch(2, keep_incomplete_batch=False), Pipeline[list[int]])


def check_reduce() -> None:
    """reduce gives one item of the accumulator's type."""
    p = Pipeline(range(10))
    start: list[int] = []
    assert_type(p.reduce(start, collect), Pipeline[list[int]])
    assert_type(p.reduce(start, lambda item, acc: [*acc, item]), Pipeline[list[int]])
    # mypy solves an empty literal accumulator to list[Never]: annotate it, as above.
    counts: dict[bool, int] = {}
    assert_type(p.reduce(counts, count_by_parity), Pipeline[dict[bool, int]])
    assert_type(p.reduce(0.0, lambda item, acc: acc + item), Pipeline[float])
    assert_type(p.wait_and_reduce(start, collect), list[int])


def check_class_task() -> None:
    """class_task: the method's item type is checked, its return type kept."""
    p = Pipeline(range(10))
    assert_type(p.class_task(Model, Model.describe, ["m"]), Pipeline[str])
    assert_type(p.batch(3).class_task(Model, Model.total, ["m"]), Pipeline[float])
    assert_type(
        p.batch(3).class_task(Tuned, Tuned.total, ["m"], Tuned.shutdown, {"scale": 2.0}, 2),
        Pipeline[float],
    )
    # A subclass may use its base class's method and close method.
    assert_type(
        p.class_task(Tuned, Model.describe, ["m"], close_method=Model.shutdown), Pipeline[str]
    )


def check_cached() -> None:
    """cached_task keeps the function's return type inside the envelope, lambdas included."""
    p = Pipeline(range(10))
    assert_type(p.cached_task(lambda x: str(x), "/tmp/c", count=2), Pipeline[CacheEnvelope[str]])
    assert_type(p.cached_task(render, "/tmp/c").uncache() >> size, Pipeline[int])
    assert_type(p.cached_task(render, "/tmp/c").uncache().task(len), Pipeline[int])
    envelopes = p.cached_task(maybe_half, "/tmp/c").wait_for_result()
    assert_type(envelopes, list[CacheEnvelope[float | None]])


def check_split_branches() -> None:
    """The branches of split keep their types through the other methods, and into run_all."""
    evens, odds = Pipeline(range(10)).split(route)
    assert_type(evens.limit(3).timeout(1.0).debug(), Pipeline[int])
    assert_type(odds.batch(2), Pipeline[list[str]])
    assert_type(odds.explode(), Pipeline[str])
    assert_type(evens.reduce("", lambda item, acc: acc + str(item)), Pipeline[str])
    assert_type(evens.gather(odds).filter(keep_anything), Pipeline[int | str])
    assert_type(evens.wait_for_results([evens.task(float)]), list[list[int | float]])
    assert_type(run_all(evens, odds, evens.batch(2)), tuple[list[int], list[str], list[list[int]]])


def check_siblings() -> None:
    """Siblings of one pipeline run together with precise types through run_all."""
    p = Pipeline(range(10))
    small = p.filter(lambda x: x < 5)
    labels = p.task(str)
    halves = p.task(maybe_half).filter()
    assert_type(run_all(small, labels, halves), tuple[list[int], list[str], list[float]])
    assert_type(Pipeline.wait_for_all_results([small, p.filter(keep_anything)]), list[list[int]])
