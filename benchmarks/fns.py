"""Stage functions shared by every system.

They live at module level so that spawn, stdlib pickle (pypeln, mpipe, ``multiprocessing.Pool``)
and cloudpickle all find them. This module stays light (no numpy): the start-up workload imports
it in every measured process.
"""

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Iterations of :func:`spin` that cost about ``BURN_MS`` ms of CPU; set by ``benchmarks.run``
#: after calibrating once, and inherited by every child through the environment.
BURN_ITERS = int(os.environ.get("OT_BENCH_BURN_ITERS", "20000"))
BURN_MS = 2.0


def ident(x: int) -> int:
    """The identity stage."""
    return x


def add_one(x: int) -> int:
    """A light stage (the memory workload): its output shows the stage really ran."""
    return x + 1


def spin(iterations: int) -> int:
    """Burn pure-Python CPU (no sleep, no GIL release): a small LCG."""
    acc = 1
    for i in range(iterations):
        acc = (acc * 1103515245 + i) & 0xFFFFFFFF
    return acc


def burn(x: int) -> int:
    """A CPU-bound stage of about ``BURN_MS`` ms; returns ``x + 1``."""
    spin(BURN_ITERS)
    return x + 1


def burn_double(x: int) -> int:
    """A CPU-bound stage twice as expensive as :func:`burn`; returns ``x + 1``."""
    spin(2 * BURN_ITERS)
    return x + 1


def spin_ms(ms: float) -> None:
    """Burn about ``ms`` ms of CPU with the calibrated loop."""
    spin(round(BURN_ITERS * ms / BURN_MS))


@dataclass(frozen=True)
class Burn:
    """A CPU-bound stage of ``ms`` ms (any cost, unlike :func:`burn`); returns ``x + 1``."""

    ms: float

    def __call__(self, x: int) -> int:
        spin_ms(self.ms)
        return x + 1


@dataclass(frozen=True)
class BurnByIndex:
    """A CPU-bound stage whose cost depends on the item: ``costs_ms[x - 1]`` ms (it runs second,
    after a stage that added 1, so it gets item k as ``k + 1``); returns ``x + 1``."""

    costs_ms: tuple[float, ...]

    def __call__(self, x: int) -> int:
        spin_ms(self.costs_ms[x - 1])
        return x + 1


def heavy_tail_costs(
    n: int, mean_ms: float, sigma: float = 1.0, seed: int = 2026
) -> tuple[float, ...]:
    """``n`` lognormal costs (ms), item k's drawn from its own seed, scaled to a mean of ``mean_ms``
    exactly: a few items cost ten times the mean and more (sigma 1: the largest of 400 near 40 ms)."""
    mu = math.log(mean_ms) - sigma * sigma / 2
    raw = [random.Random(seed * 1_000_003 + k).lognormvariate(mu, sigma) for k in range(n)]
    scale = mean_ms * n / sum(raw)
    return tuple(c * scale for c in raw)


def periodic_costs(n: int, base_ms: float, spike_ms: float, period: int) -> tuple[float, ...]:
    """``n`` costs (ms): ``base_ms`` each, but ``spike_ms`` for every ``period``-th item."""
    return tuple(spike_ms if k % period == period - 1 else base_ms for k in range(n))


def calibrate(target_ms: float = BURN_MS, rounds: int = 7) -> int:
    """Iterations of :func:`spin` that take ``target_ms`` ms here (best of ``rounds``)."""
    probe = 200_000
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        spin(probe)
        best = min(best, time.perf_counter() - start)
    return max(1, round(probe * target_ms / 1000.0 / best))


def count_in_order(x: int, acc: tuple[int, int]) -> tuple[int, int]:
    """Reducer for the memory workload (olympipe runs it in a stage).

    ``acc`` is ``(count, first bad position or -1)``; item ``k`` must be ``k + 2``.
    """
    count, bad = acc
    if bad < 0 and x != count + 2:
        bad = count
    return count + 1, bad


@dataclass(frozen=True)
class Composed:
    """Stages composed into one function (``multiprocessing.Pool`` cannot chain stages)."""

    fs: tuple[Callable[[Any], Any], ...]

    def __call__(self, x: Any) -> Any:
        for f in self.fs:
            x = f(x)
        return x
