"""Property: random graphs give exactly the inline backend's result on every other backend."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from olympipe_typed import Pipeline, Stage, batch, filter_stage, flat_stage, run_all, source, stage

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn

pytestmark = pytest.mark.timeout(600)

# Each generated stage maps ints to ints, so any two compose.
# Any stage from int to int, whatever calling it directly returns (a flat stage: a list).
IntStage = Stage[int, int, object]


def _options(draw: DrawFn, s: IntStage) -> IntStage:
    workers = draw(st.integers(1, 3))
    ordered = draw(st.booleans())
    return s.options(workers=workers, ordered=ordered)


@st.composite
def leaf(draw: DrawFn) -> IntStage:
    """One map, flat, filter or batch-then-sum stage with random options."""
    k = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["map", "flat", "filter", "batch"]))

    # Closures, shipped by cloudpickle under spawn as well.
    def affine(x: int) -> int:
        return x * k + 1

    def spread(x: int) -> list[int]:
        return [x + i for i in range(x % (k + 1))]

    def keep(x: int) -> bool:
        return x % (k + 1) != 0

    def total(xs: list[int]) -> int:
        return sum(xs)

    if kind == "map":
        return _options(draw, stage(affine))
    if kind == "flat":
        return _options(draw, flat_stage(spread))
    if kind == "filter":
        return _options(draw, filter_stage(keep))
    return batch(k) >> stage(total)


@st.composite
def composite(draw: DrawFn, depth: int = 2) -> IntStage:
    """A chain of leaves, with fan-outs nested up to ``depth`` levels."""
    parts: list[IntStage] = []
    for _ in range(draw(st.integers(1, 3))):
        if depth > 0 and draw(st.integers(0, 3)) == 0:
            parts.append(draw(composite(depth - 1)) | draw(composite(depth - 1)))
        else:
            parts.append(draw(leaf()))
    result = parts[0]
    for part in parts[1:]:
        result = result >> part
    return result


@st.composite
def graphs(draw: DrawFn) -> list[Pipeline[int]]:
    """One to three outputs that share an upstream part, sometimes gathered with another flow."""
    n = draw(st.integers(0, 40))
    base = source(range(n)) >> draw(composite())
    outputs = [base >> draw(composite()) for _ in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        outputs.append(outputs[0] | (base >> draw(leaf())))
    return outputs


def describe(pipes: list[Pipeline[int]]) -> str:
    """The compiled graph, one node a line: what hypothesis prints for a failing example."""
    from olympipe_typed._graph import compile_graph

    graph = compile_graph([p._node for p in pipes])
    lines = [
        f"{n.id} {n.name} workers={n.op.options.workers} ordered={n.op.options.ordered} "
        f"size={n.op.size} parents={n.parents}"
        if n.op is not None
        else f"{n.id} {n.name} (source of {n.source.length() if n.source else '?'} items)"
        for n in graph.nodes
    ]
    return "\n".join([*lines, f"outputs={graph.outputs}"])


def batches_after_unordered(pipes: list[Pipeline[int]]) -> bool:
    """Whether a batch stage takes items from an ordered=False stage with several workers.

    Such a batch groups items as they happen to arrive, so its groups, and the sums we
    take of them, legitimately differ from the inline run's.
    """
    from olympipe_typed._graph import compile_graph

    graph = compile_graph([p._node for p in pipes])
    free: dict[int, bool] = {}
    for n in graph.nodes:
        unordered = (
            n.op is not None and not n.op.options.ordered and (n.op.options.workers or 1) > 1
        )
        free[n.id] = unordered or any(free[p] for p in n.parents)
        if n.op is not None and n.op.kind == "batch" and any(free[p] for p in n.parents):
            return True
    return False


def _check(pipes: list[Pipeline[int]], **run: Any) -> None:
    assume(not batches_after_unordered(pipes))
    note(describe(pipes))
    expected = run_all(*pipes, backend="inline")
    got = run_all(*pipes, **run)
    for want, have in zip(expected, got, strict=True):
        # ordered=False lets a stage emit as items finish: compare as multisets then.
        assert Counter(have) == Counter(want)
    if not any_unordered(pipes):
        assert got == expected


def any_unordered(pipes: list[Pipeline[int]]) -> bool:
    """Whether any stage behind these pipelines was declared ordered=False."""
    from olympipe_typed._graph import compile_graph

    graph = compile_graph([p._node for p in pipes])
    return any(n.op is not None and not n.op.options.ordered for n in graph.nodes)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        derandomize=True,
        database=None,
    )


@_settings(40)
@given(graphs())
def test_property_thread_backend_equals_inline(pipes: list[Pipeline[int]]) -> None:
    """Random graphs on the thread backend give the inline result."""
    _check(pipes, backend="thread")


@_settings(40)
@given(graphs())
def test_property_process_fork_equals_inline(pipes: list[Pipeline[int]]) -> None:
    """Random graphs on the process backend under fork give the inline result."""
    _check(pipes, backend="process", start_method="fork")


@_settings(6)
@given(graphs())
def test_property_process_spawn_equals_inline(pipes: list[Pipeline[int]]) -> None:
    """Random graphs on the process backend under spawn give the inline result."""
    _check(pipes, backend="process", start_method="spawn")
