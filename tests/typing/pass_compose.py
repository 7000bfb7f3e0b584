"""Composition with ``>>``: ``Stage >> Stage`` is a reusable composite, ``Pipeline >> Stage`` extends a flow."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline, Stage, flat_stage, source, stage


@stage
def parse(line: str) -> int:
    return int(line)


@stage
def times_2(x: int) -> int:
    return x * 2


@stage
def to_label(x: int) -> str:
    return f"item-{x}"


@flat_stage
def digits(label: str) -> list[int]:
    return [int(c) for c in label if c.isdigit()]


def plain_len(s: str) -> int:
    return len(s)


# A composite is a Stage: shareable as a library, composable again.
parse_and_double = parse >> times_2
labelled = parse_and_double >> to_label
round_trip = labelled >> digits >> times_2

assert_type(parse_and_double, Stage[str, int])
assert_type(labelled, Stage[str, str])
assert_type(round_trip, Stage[str, int])
assert_type(parse >> (times_2 >> to_label), Stage[str, str])
assert_type(to_label >> plain_len, Stage[int, int])
assert_type(to_label >> str.upper, Stage[int, str])


def check() -> None:
    """Extend pipelines with single stages, composites and plain callables (built, never run)."""
    lines = source(["1", "22", "333"])
    assert_type(lines, Pipeline[str])
    assert_type(lines >> parse, Pipeline[int])
    assert_type(lines >> parse_and_double, Pipeline[int])
    assert_type(lines >> labelled, Pipeline[str])
    assert_type(lines >> round_trip >> to_label, Pipeline[str])
    assert_type((lines >> parse) >> (times_2 >> to_label), Pipeline[str])
    assert_type(lines >> plain_len, Pipeline[int])
    assert_type(lines >> str.upper >> parse, Pipeline[int])
    assert_type(source(range(3)) >> str, Pipeline[str])

    # The same stage may appear several times in one graph and in several graphs.
    twice = times_2 >> times_2
    assert_type(twice, Stage[int, int])
    assert_type(source(range(3)) >> twice >> twice, Pipeline[int])
    assert_type(lines >> parse >> twice, Pipeline[int])
