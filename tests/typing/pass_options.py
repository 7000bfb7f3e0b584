"""``.options(...)`` and decorator options keep a stage's type."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline, Stage, batch, filter_stage, flat_stage, source, stage


@stage
def resize(x: int) -> int:
    return x


@flat_stage
def explode_chars(s: str) -> list[str]:
    return list(s)


@filter_stage
def positive(x: int) -> bool:
    return x > 0


def fallback(item: int, error: Exception) -> int:
    del error
    return -item


@stage(
    name="careful",
    workers=2,
    ordered=False,
    queue_size=16,
    on_error="skip",
    retries=3,
)
def careful(x: int) -> str:
    return str(x)


@stage(on_error=fallback)
def with_fallback(x: int) -> int:
    return 100 // x


assert_type(resize.options(workers=8), Stage[int, int])
assert_type(
    resize.options(name="resize", workers=8, ordered=False, queue_size=4, on_error="raise"),
    Stage[int, int],
)
assert_type(resize.options(retries=2, on_error="skip"), Stage[int, int])
assert_type(explode_chars.options(workers=2), Stage[str, str, list[str]])
assert_type(positive.options(queue_size=1), Stage[int, int, bool])
assert_type(careful, Stage[int, str])
assert_type(with_fallback, Stage[int, int])
assert_type((resize >> careful).options(workers=2), Stage[int, str])
assert_type((resize | careful).options(ordered=True), Stage[int, int | str])
assert_type((resize >> batch(2)).options(workers=1), Stage[int, list[int]])
assert_type(resize.options(workers=2).options(workers=3), Stage[int, int])
assert_type(resize.name, str)
assert_type(resize.workers, int)


def check() -> None:
    """Stages with other options wire like the originals (built, never run)."""
    assert_type(source(range(3)) >> resize.options(workers=8) >> careful, Pipeline[str])
    assert_type(source(["ab"]) >> explode_chars.options(ordered=False), Pipeline[str])
