"""The planner (API.md §7): fused groups, workers chosen by the engine, free-worker dispatch
with a bounded reorder window, and the plan in the run report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from olympipe_typed import (
    StageError,
    WorkerDied,
    batch,
    filter_stage,
    flat_stage,
    run_all,
    source,
    stage,
)
from olympipe_typed._graph import compile_graph
from olympipe_typed._planner import Group, Plan, physical
from olympipe_typed._report import RunReport, StageReport

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from olympipe_typed import Pipeline
    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
CORES = len(os.sched_getaffinity(0))


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return 2 * x


def odd(x: int) -> bool:
    return x % 2 == 1


def pair(x: int) -> list[int]:
    return [x, -x]


def total(xs: list[int]) -> int:
    return sum(xs)


class Scale:
    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return self.k * x


def test_adjacent_function_stages_run_fused_in_one_group_per_core() -> None:
    """A chain of function stages without workers= runs as one group, one worker per core;
    results and the per-stage report are those of the stages as written."""
    p = source(range(500)) >> stage(inc) >> stage(double) >> flat_stage(pair) >> filter_stage(odd)
    expected = p.run(backend="inline")
    assert p.run() == expected
    report = p.last_report
    assert report is not None
    assert report.plan is not None
    assert [g.stages for g in report.plan.groups] == [("inc", "double", "pair", "odd")]
    assert report.plan.groups[0].workers == CORES
    assert report.plan.groups[0].auto
    counts = {s.name: (s.items_in, s.items_out) for s in report.stages}
    assert counts == {
        "inc": (500, 500),
        "double": (500, 500),
        "pair": (500, 1000),
        "odd": (1000, len(expected)),
    }
    assert "inc+double+pair+odd: fused" in str(report)


def items_gen(n: int) -> Iterator[int]:
    yield from range(n)


@pytest.mark.parametrize(
    ("make", "workers"),
    [
        (lambda: source([5]), 1),
        (lambda: source((5, 6)), min(CORES, 2)),
        (lambda: source(range(0)), 1),
        (lambda: source(range(3)), min(CORES, 3)),
        (lambda: source(items_gen(1)), CORES),  # a generator does not say how many
    ],
    ids=["list of 1", "tuple of 2", "empty range", "range of 3", "generator"],
)
def test_no_group_gets_more_workers_than_the_source_has_items(
    make: Callable[[], Pipeline[int]], workers: int
) -> None:
    """A message goes to one worker: a list, tuple or range of n items starts at most n."""
    expected = (make() >> stage(inc) >> stage(double)).run(backend="inline")
    p = make() >> stage(inc) >> stage(double)  # a generator is read once
    assert p.run() == expected
    report = p.last_report
    assert report is not None
    assert report.plan is not None
    assert [(g.stages, g.workers) for g in report.plan.groups] == [(("inc", "double"), workers)]


def _plan(p: Pipeline[Any], *, threads: bool = False) -> Plan:
    return physical(compile_graph([p._node]), "auto", budget=2, threads=threads)[2]


def test_the_plan_names_the_stages_that_workers_keeps_apart() -> None:
    """The image job with its old hints (augment, encode x2): those two run as written, and
    the plan says that without workers= they would be fused with decode+resize, two process
    boundaries fewer an item. A class stage, or a stage next to a batch, is apart anyway."""
    hinted = (
        source(range(4))
        >> stage(inc)
        >> stage(double)
        >> stage(inc).options(name="augment", workers=2)
        >> stage(double).options(name="encode", workers=2)
    )
    plan = _plan(hinted)
    assert [(g.stages, g.auto) for g in plan.groups] == [
        (("inc", "double"), True),
        (("augment",), False),
        (("encode",), False),
    ]
    assert (plan.apart, plan.crossings) == (("augment", "encode"), 2)
    assert plan.to_dict()["apart"] == ["augment", "encode"]
    assert _plan(hinted, threads=True).apart == ()
    assert _plan(source(range(4)) >> stage(inc) >> stage(double)).apart == ()
    kept = (
        source(range(4))
        >> stage(inc)
        >> stage(Scale)(3).options(workers=2)
        >> stage(double).options(workers=2)
        >> batch(2)
    )
    assert (_plan(kept).apart, _plan(kept).crossings) == ((), 0)


def test_when_the_cpus_are_busy_the_hint_names_the_stages_workers_keeps_apart() -> None:
    """More workers cannot help when every core is busy; fusing can: the hint says which
    stages' workers= stop the planner from fusing them, and what it costs each item."""
    plan = Plan(
        "auto",
        [
            Group(("decode", "resize"), 2, auto=True),
            Group(("augment",), 2, auto=False),
            Group(("encode",), 2, auto=False),
        ],
        ("augment", "encode"),
        2,
    )
    stages = [
        StageReport(name, 2, 10, 10, busy=1.0, waiting=0.0, blocked=0.0, queue_fill=None, cpu=cpu)
        for name, cpu in (("decode", 0.6), ("resize", 0.4), ("augment", 0.5), ("encode", 0.4))
    ]
    hint = RunReport("process", 1.0, stages, cores=2, plan=plan).hint
    assert hint.startswith("the stages kept all 2 CPUs busy (1.9 of 2; decode used the most)")
    assert hint.endswith(
        "augment, encode run in processes of their own because of their workers=: without it "
        "the planner fuses them with their neighbours, and each item crosses 2 process "
        "boundaries fewer"
    )
    unhinted = Plan("auto", [Group(("decode", "resize", "augment", "encode"), 2, auto=True)])
    assert RunReport("process", 1.0, stages, cores=2, plan=unhinted).hint.endswith(
        "a faster stage or more machines will"
    )


def test_per_stage_plan_runs_each_stage_as_written() -> None:
    p = source(range(200)) >> stage(inc) >> stage(double)
    assert p.run(plan="per_stage") == p.run(backend="inline")
    report = p.last_report
    assert report is not None
    assert report.plan is not None
    assert [(g.stages, g.workers, g.auto) for g in report.plan.groups] == [
        (("inc",), 1, False),
        (("double",), 1, False),
    ]


def test_plan_must_be_auto_or_per_stage() -> None:
    with pytest.raises(ValueError, match="plan must be 'auto' or 'per_stage'"):
        source(range(3)).run(plan="fast")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_what_the_user_wrote_is_kept_and_never_fused() -> None:
    """Explicit workers=, class stages, stateful kinds and resources stay groups of their own
    with the workers written; the function stages between them are fused."""
    p = (
        source(range(300))
        >> stage(inc)
        >> stage(double)
        >> stage(inc).options(workers=2, name="two")
        >> stage(Scale)(3).options(name="scale")
        >> stage(inc).options(name="i2")
        >> stage(double).options(name="d2")
        >> batch(4)
        >> stage(len).options(resources={"num_cpus": 1})
    )
    expected = p.run(backend="inline")
    assert p.run() == expected
    report = p.last_report
    assert report is not None
    assert report.plan is not None
    plan = [(g.stages, g.workers, g.auto) for g in report.plan.groups]
    assert plan == [
        (("inc", "double"), CORES, True),
        (("two",), 2, False),
        (("scale",), 1, False),
        (("i2", "d2"), CORES, True),
        (("batch(4)",), 1, False),
        (("len",), 1, False),
    ]


def test_an_output_read_by_the_caller_ends_a_fused_chain() -> None:
    base = source(range(50)) >> stage(inc)
    left = base >> stage(double)
    out = run_all(base, left)
    assert out == ([x + 1 for x in range(50)], [2 * (x + 1) for x in range(50)])


def fail_on_7(x: int) -> int:
    if x == 7:
        msg = "seven"
        raise ValueError(msg)
    return x


def test_an_error_in_a_fused_group_names_its_stage() -> None:
    p = source(range(20)) >> stage(inc) >> stage(fail_on_7).options(name="picky") >> stage(inc)
    with pytest.raises(StageError) as info:
        p.run()
    assert info.value.stage == "picky"
    assert "7" in info.value.item_repr


def die_on_5(x: int) -> int:
    if x == 5:
        os._exit(3)
    return x


def test_a_worker_that_dies_in_a_fused_group_names_its_stage() -> None:
    p = source(range(20)) >> stage(inc) >> stage(die_on_5).options(name="fragile") >> stage(inc)
    with pytest.raises(WorkerDied) as info:
        p.run()
    assert info.value.stage == "fragile"


def test_failures_collected_in_a_fused_group_are_their_stages() -> None:
    p = (
        source(range(30))
        >> stage(inc)
        >> stage(fail_on_7).options(on_error="collect", name="picky")
        >> stage(double)
    )
    assert p.run() == [2 * x for x in range(1, 31) if x != 7]
    report = p.last_report
    assert report is not None
    assert [(f.stage, f.item) for f in report.failures] == [("picky", 7)]
    assert report.stage("picky").items_in == 30
    assert report.stage("double").items_in == 29


def slow_first(x: int) -> tuple[int, int]:
    time.sleep(1.0 if x == 0 else 0.005)
    return x, os.getpid()


@pytest.mark.skipif(CORES < 2, reason="needs 2 cores for 2 workers")
def test_one_slow_item_does_not_hold_back_the_other_workers() -> None:
    """Messages go to a free worker: while one worker spends a second on item 0, the other
    takes nearly every other item (dealt in turn, it would get half); order is kept."""
    out = (source(range(100)) >> stage(slow_first)).run()
    assert [x for x, _ in out] == list(range(100))
    slow_pid = out[0][1]
    by_slow = sum(1 for _, pid in out if pid == slow_pid)
    assert by_slow < 25, f"the worker busy with the slow item took {by_slow} of 100"


def test_memory_stays_flat_when_one_item_is_1000_times_slower() -> None:
    """The reorder window bounds what waits behind a slow item: 2,000 outputs of 200 kB
    (400 MB in all) behind an item 1000x slower than the rest, the caller's peak memory grows
    by far less than what an unbounded reorder buffer would hold (about 200 MB)."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "planner_memory_child.py")],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    grown_mb = float(proc.stdout.split()[-1])
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_dealt_stages_keep_order_with_batches_and_filters(backend: Backend) -> None:
    """Out-of-order workers, restored by a stateful reader and by the caller."""
    p = (
        source(range(400))
        >> stage(inc).options(workers=3)
        >> batch(7)
        >> stage(total).options(workers=2)
        >> filter_stage(odd).options(workers=2)
    )
    assert p.run(backend=backend) == p.run(backend="inline")


def cheap(x: int) -> int:
    return x


def costly(x: int) -> int:
    end = time.thread_time() + 0.004
    while time.thread_time() < end:
        pass
    return x


@pytest.mark.skipif(CORES < 2, reason="needs 2 cores to share")
def test_the_planner_moves_cores_to_the_group_that_costs_more() -> None:
    """Two auto groups apart (a class stage between them) start with a core each; the costly
    one gets both once the costs are measured, without losing order or items."""
    p = source(range(600)) >> stage(cheap) >> stage(Scale)(1).options(name="keep") >> stage(costly)
    assert p.run() == list(range(600))
    report = p.last_report
    assert report is not None
    assert report.plan is not None
    history = report.plan.group_of("costly").history
    assert history[0][1] == 1
    assert max(n for _, n in history) == CORES
    assert "1 -> 2 workers" in str(report.plan) or CORES != 2
