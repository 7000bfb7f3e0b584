"""``source(iterable)`` is a ``Pipeline[T]``; ``@source`` on a generator function makes a reusable source."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from olympipe_typed import Pipeline, source, stage

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


@source
def countdown(n: int) -> Iterator[int]:
    yield from range(n, 0, -1)


@source
def lines(path: str, *, encoding: str = "utf-8") -> Iterator[str]:
    with open(path, encoding=encoding) as f:
        yield from f


@source
def pairs(keys: list[str]) -> Iterable[tuple[str, int]]:
    return [(k, len(k)) for k in keys]


@stage
def times_2(x: int) -> int:
    return x * 2


def frames() -> Iterator[bytes]:
    yield b"frame"


def check() -> None:
    """Sources from iterables and from generator functions (built, never run)."""
    assert_type(source([1, 2, 3]), Pipeline[int])
    assert_type(source(range(10)), Pipeline[int])
    assert_type(source("abc"), Pipeline[str])
    assert_type(source((1.0, 2.0)), Pipeline[float])
    assert_type(source({"a": 1}), Pipeline[str])
    assert_type(source({"a": 1}.items()), Pipeline[tuple[str, int]])
    assert_type(source(frames()), Pipeline[bytes])
    assert_type(source(x * 2 for x in range(3)), Pipeline[int])
    assert_type(Pipeline([b"a"]), Pipeline[bytes])
    assert_type(Pipeline(iter(["a"])), Pipeline[str])

    assert_type(countdown(3), Pipeline[int])
    assert_type(countdown(n=3) >> times_2, Pipeline[int])
    assert_type(lines("data.txt"), Pipeline[str])
    assert_type(lines("data.txt", encoding="latin-1"), Pipeline[str])
    assert_type(pairs(["a", "bb"]), Pipeline[tuple[str, int]])
