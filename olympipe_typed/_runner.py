"""Dispatch a compiled graph to a backend; every backend yields (output index, items) pairs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._graph import Graph
    from ._report import Recorder


def execute(
    graph: Graph,
    *,
    backend: str = "process",
    check_types: bool = False,
    start_method: str | None = None,
    recorder: Recorder | None = None,
    plan: str = "auto",
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``graph`` on ``backend``, yielding (output index, items) as outputs appear, in order.

    ``recorder`` receives the numbers of the run report, and draws progress if asked.
    ``plan``: the process and thread backends fuse and size stages unless "per_stage"; the
    inline and Ray backends run one group per stage, as written.
    """
    from ._planner import check_plan, logical_plan

    mode = check_plan(plan)
    _refuse_while_bootstrapping()
    if recorder is not None and backend in ("inline", "ray"):
        recorder.plan = logical_plan(graph, backend)
    if backend == "inline":
        from .backends import inline

        return inline.execute(graph, check_types=check_types, recorder=recorder)
    if backend in ("process", "thread"):
        from .backends import process

        threads = backend == "thread"
        return process.execute(
            graph,
            threads=threads,
            check_types=check_types,
            start_method=start_method,
            recorder=recorder,
            plan=mode,
        )
    if backend == "ray":
        from .backends import ray

        return ray.execute(graph, check_types=check_types, recorder=recorder)
    msg = f"backend must be one of 'process', 'thread', 'inline', 'ray' (got {backend!r})"
    raise ValueError(msg)


def _refuse_while_bootstrapping() -> None:
    """Fail at once, naming the guard, in a worker that is re-importing the main module.

    Under spawn and forkserver, a worker imports the caller's main module; a script that
    runs a pipeline at import would otherwise start workers from its workers.
    """
    process = sys.modules.get("multiprocessing.process")
    if process is not None and getattr(process.current_process(), "_inheriting", False):
        msg = (
            "a pipeline was run while a worker process was importing the main module: "
            "put the code that runs pipelines under `if __name__ == '__main__':`"
        )
        raise RuntimeError(msg)
