"""olympipe's README examples keep precise types here, where olympipe 2.2.0 gives ``Any``."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import CacheEnvelope, Pipeline, run_all


def heavy_compute(x: int) -> int:
    return x - 500


def slow_io(url: str) -> bytes:
    return url.encode()


class RunningStats:
    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0

    def update(self, x: float) -> dict[str, float]:
        self.n += 1
        self.total += x
        return {"n": self.n, "mean": self.total / self.n}


def route(x: int) -> tuple[int | None, int | None]:
    return (x, None) if x % 2 == 0 else (None, x)


def expensive_step_1(x: int) -> int:
    return x**2


def expensive_step_2(x: int) -> int:
    return x + 1


def check(my_urls: list[str], sensor_stream: list[float]) -> None:
    """Each README example's result type (built, never run)."""
    intro = Pipeline(range(1000)).task(heavy_compute, count=8).filter(lambda x: x > 0).batch(32)
    assert_type(intro, Pipeline[list[int]])
    basic = Pipeline(range(20)).task(lambda x: x * 2).filter(lambda x: x % 4 == 0).batch(3)
    assert_type(basic.wait_for_result(), list[list[int]])
    assert_type(Pipeline(my_urls).task(slow_io, count=20), Pipeline[bytes])
    stats = Pipeline(sensor_stream).class_task(RunningStats, RunningStats.update)
    assert_type(stats.wait_for_result(), list[dict[str, float]])
    # An int stream into a method that takes float: the int/float promotion holds.
    assert_type(
        Pipeline(range(3)).class_task(RunningStats, RunningStats.update), Pipeline[dict[str, float]]
    )


def check_split_gather() -> None:
    """Split & gather: each branch and the gathered flow keep their item types."""
    evens, odds = Pipeline(range(20)).split(route, n=2)
    assert_type(evens, Pipeline[int])
    assert_type(odds, Pipeline[int])
    gathered = evens.task(lambda x: x * 10).gather(odds.task(lambda x: -x))
    assert_type(gathered, Pipeline[int])
    assert_type(gathered.wait_for_result(), list[int])
    halves = odds.task(lambda x: x / 2)
    labels = evens.task(str)
    assert_type(halves.gather(labels), Pipeline[float | str])
    assert_type(run_all(halves, labels), tuple[list[float], list[str]])


def check_caching(cache_dir: str) -> None:
    """Step caching: envelopes, then the results they carry."""
    first = Pipeline(range(100)).cached_task(expensive_step_1, cache_dir=cache_dir)
    assert_type(first, Pipeline[CacheEnvelope[int]])
    both = first.uncache().cached_task(expensive_step_2, cache_dir=cache_dir)
    assert_type(both, Pipeline[CacheEnvelope[int]])
    assert_type(both.uncache().wait_for_result(), list[int])


def check_temporal_batching() -> None:
    """Temporal batching: lists of items, then whatever the next task makes of them."""
    windows = Pipeline(range(100)).task(heavy_compute).temporal_batch(0.5)
    assert_type(windows, Pipeline[list[int]])
    assert_type(windows.task(lambda batch: sum(batch)), Pipeline[int])
    assert_type(windows.task(len).wait_for_result(), list[int])
