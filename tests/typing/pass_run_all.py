"""``run_all`` gives a precisely typed tuple of result lists for 1 to 8 pipelines."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline, run_all, source, stage


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


@stage
def half(x: int) -> float:
    return x / 2


def check(
    p1: Pipeline[int],
    p2: Pipeline[str],
    p3: Pipeline[float],
    p4: Pipeline[bytes],
    p5: Pipeline[bool],
    p6: Pipeline[list[int]],
    p7: Pipeline[tuple[str, int]],
    p8: Pipeline[None],
) -> None:
    """Unpack run_all results for 1..8 pipelines (only type-checked, never called)."""
    assert_type(run_all(p1), tuple[list[int]])
    assert_type(run_all(p1, p2), tuple[list[int], list[str]])
    assert_type(run_all(p1, p2, p3), tuple[list[int], list[str], list[float]])
    assert_type(run_all(p1, p2, p3, p4), tuple[list[int], list[str], list[float], list[bytes]])
    assert_type(
        run_all(p1, p2, p3, p4, p5),
        tuple[list[int], list[str], list[float], list[bytes], list[bool]],
    )
    assert_type(
        run_all(p1, p2, p3, p4, p5, p6),
        tuple[list[int], list[str], list[float], list[bytes], list[bool], list[list[int]]],
    )
    assert_type(
        run_all(p1, p2, p3, p4, p5, p6, p7),
        tuple[
            list[int],
            list[str],
            list[float],
            list[bytes],
            list[bool],
            list[list[int]],
            list[tuple[str, int]],
        ],
    )
    assert_type(
        run_all(p1, p2, p3, p4, p5, p6, p7, p8, backend="inline", progress=False),
        tuple[
            list[int],
            list[str],
            list[float],
            list[bytes],
            list[bool],
            list[list[int]],
            list[tuple[str, int]],
            list[None],
        ],
    )
    # Beyond 8, or unpacked from a sequence: a homogeneous variadic tuple.
    assert_type(run_all(p1, p1, p1, p1, p1, p1, p1, p1, p1), tuple[list[int], ...])
    pipes = [p1, p1]
    assert_type(run_all(*pipes), tuple[list[int], ...])


def check_shared_upstream() -> None:
    """Pipelines that share an upstream node unpack to their own item types (never run)."""
    base = source(range(4))
    labels, halves = run_all(base >> to_label, base >> half, check_types=True)
    assert_type(labels, list[str])
    assert_type(halves, list[float])
    (only,) = run_all(base, backend="thread")
    assert_type(only, list[int])
