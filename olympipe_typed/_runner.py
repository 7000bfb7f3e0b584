"""Dispatch a compiled graph to a backend; every backend yields (output index, items) pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._graph import Graph


def execute(
    graph: Graph,
    *,
    backend: str = "process",
    progress: bool = False,
    check_types: bool = False,
    start_method: str | None = None,
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``graph`` on ``backend``, yielding (output index, items) as outputs appear, in order."""
    del progress  # the progress display comes with the run report
    if backend == "inline":
        from .backends import inline

        return inline.execute(graph, check_types=check_types)
    if backend in ("process", "thread"):
        from .backends import process

        threads = backend == "thread"
        return process.execute(
            graph, threads=threads, check_types=check_types, start_method=start_method
        )
    msg = f"backend must be one of 'process', 'thread', 'inline', 'ray' (got {backend!r})"
    raise ValueError(msg)
