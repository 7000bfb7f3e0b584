"""The olympipe-style fluent methods on ``Pipeline[T]``, each precisely typed."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline


def times_2(x: int) -> int:
    return x * 2


def is_even(x: int) -> bool:
    return x % 2 == 0


def digits(x: int) -> list[int]:
    return [int(c) for c in str(x)]


def maybe_label(x: int) -> str | None:
    return None if x % 2 else f"item-{x}"


def add(item: int, acc: int) -> int:
    return item + acc


def describe(item: object) -> str:
    return repr(item)


class Model:
    def __init__(self, path: str, *, scale: float = 1.0) -> None:
        self.path = path
        self.scale = scale

    def predict(self, x: int) -> float:
        return x * self.scale

    def close(self) -> None:
        pass


def check() -> None:
    """Each fluent method's result type (built, never run)."""
    p = Pipeline(range(10))
    assert_type(p, Pipeline[int])
    assert_type(p.task(times_2), Pipeline[int])
    assert_type(p.task(times_2, count=4), Pipeline[int])
    assert_type(p.task(str), Pipeline[str])
    assert_type(p.task(describe), Pipeline[str])
    assert_type(p.task(lambda x: x / 2), Pipeline[float])
    assert_type(p.filter(is_even), Pipeline[int])
    assert_type(p.filter(lambda x: x > 2), Pipeline[int])
    # filter() without a function drops the Nones.
    assert_type(p.task(maybe_label), Pipeline[str | None])
    assert_type(p.task(maybe_label).filter(), Pipeline[str])
    # explode() with a function, and without one on a pipeline of iterables.
    assert_type(p.explode(digits), Pipeline[int])
    assert_type(p.explode(lambda x: [str(x)] * x), Pipeline[str])
    assert_type(p.task(digits).explode(), Pipeline[int])
    assert_type(Pipeline(["ab", "cd"]).explode(), Pipeline[str])
    assert_type(p.batch(), Pipeline[list[int]])
    assert_type(p.batch(3, keep_incomplete_batch=False), Pipeline[list[int]])
    assert_type(p.temporal_batch(0.5), Pipeline[list[int]])
    assert_type(p.reduce(0, add), Pipeline[int])
    assert_type(p.reduce("", lambda item, acc: acc + str(item)), Pipeline[str])
    assert_type(p.class_task(Model, Model.predict), Pipeline[float])
    assert_type(
        p.class_task(
            Model,
            Model.predict,
            class_args=["model.bin"],
            close_method=Model.close,
            class_kwargs={"scale": 2.0},
            count=2,
        ),
        Pipeline[float],
    )
    assert_type(p.limit(3), Pipeline[int])
    assert_type(p.timeout(1.5), Pipeline[int])
    assert_type(p.debug(), Pipeline[int])
    assert_type(p.start(), Pipeline[int])
    assert_type(p.task(times_2).filter(is_even).batch(2).explode().limit(5), Pipeline[int])
