"""``split`` into typed branches, ``gather``, and the olympipe-style ways to wait for results."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline


def route2(x: int) -> tuple[int | None, str | None]:
    return (x, None) if x % 2 else (None, str(x))


def route3(x: int) -> tuple[int | None, str | None, float | None]:
    return (x, None, None)


def route4(x: int) -> tuple[int | None, str | None, float | None, bytes | None]:
    return (x, None, None, None)


def route_many(x: int) -> tuple[int | None, ...]:
    return (x, None, None)


def add(item: int, acc: int) -> int:
    return item + acc


def check() -> None:
    """Split and gather types (built, never run)."""
    p = Pipeline(range(10))
    odd, even_labels = p.split(route2)
    assert_type(odd, Pipeline[int])
    assert_type(even_labels, Pipeline[str])
    assert_type(p.split(route2, 2), tuple[Pipeline[int], Pipeline[str]])
    assert_type(p.split(route3), tuple[Pipeline[int], Pipeline[str], Pipeline[float]])
    assert_type(
        p.split(route4),
        tuple[Pipeline[int], Pipeline[str], Pipeline[float], Pipeline[bytes]],
    )
    assert_type(p.split(route_many, 3), tuple[Pipeline[int], ...])
    assert_type(
        p.split(lambda x: (x if x > 1 else None, str(x) if x <= 1 else None)),
        tuple[Pipeline[int], Pipeline[str]],
    )
    assert_type(odd.gather(even_labels), Pipeline[int | str])
    assert_type(odd.gather(), Pipeline[int])
    assert_type(odd.gather(odd, odd), Pipeline[int])
    assert_type(odd.gather(even_labels).task(str), Pipeline[str])


def check_waiting() -> None:
    """The result types of the waiting methods (never run)."""
    p = Pipeline(range(10))
    labels = p.task(str)
    assert_type(p.wait_for_result(), list[int])
    assert_type(p.wait_for_results(), list[list[int]])
    assert_type(p.wait_for_results([p]), list[list[int]])
    assert_type(p.wait_for_results([labels]), list[list[int | str]])
    assert_type(p.wait_and_reduce(0, add), int)
    assert_type(p.wait_and_reduce("", lambda item, acc: acc + str(item)), str)
    assert_type(Pipeline.wait_for_all_results([p, p]), list[list[int]])
    pipes: list[Pipeline[int | str]] = [p, labels]
    assert_type(Pipeline.wait_for_all_results(pipes), list[list[int | str]])
    assert_type(p.wait_for_completion(), None)
    assert_type(p.wait_for_completion([labels]), None)
