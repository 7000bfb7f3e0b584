"""The reference backend: the whole graph, sequentially, in the caller's thread.

Items are pushed depth-first: each output of a node goes through the first
child's whole subgraph before the second child sees it. That one rule gives
the documented orders: per input, a fan-out's first branch's outputs then the
second's; a shared node's item reaches every child (broadcast). Several
sources are read in turn, one item each.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .._errors import SourceError, StageError
from .._ops import log_skipped

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .._graph import Graph
    from .._ops import Emit, Processor


def execute(graph: Graph, *, check_types: bool = False) -> Iterator[tuple[int, list[Any]]]:
    """Run ``graph``; yield (output index, [item]) as items reach the outputs."""
    ready: deque[tuple[int, object]] = deque()
    procs: dict[int, Processor] = {}
    try:
        for node in graph.nodes:
            if node.op is not None:
                procs[node.id] = node.op.open(node.name, check_types=check_types)
        emitters = _emitters(graph, procs, ready)
        timed = [(k, p) for k, p in procs.items() if p.op.seconds is not None]
        sinks = graph.sinks_of()
        limited = any(p.op.kind in ("limit", "timeout") for p in procs.values())
        iterators = [(n.id, n.name, iter(n.source.open())) for n in graph.sources if n.source]
        while iterators:
            for entry in list(iterators):
                node_id, name, iterator = entry
                if limited and not _alive(graph, procs, sinks, node_id):
                    iterators.remove(entry)
                    continue
                try:
                    item = next(iterator)
                except StopIteration:
                    iterators.remove(entry)
                    continue
                except Exception as exc:
                    msg = f"source {name!r} raised {type(exc).__name__}: {exc}"
                    raise SourceError(msg) from exc
                if timed:
                    now = time.monotonic()
                    for proc_id, proc in timed:
                        proc.poll(now, emitters[proc_id])
                emitters[node_id](item)
                while ready:
                    index, item = ready.popleft()
                    yield index, [item]
        for node in graph.nodes:
            if node.op is not None:
                procs[node.id].flush(emitters[node.id])
                while ready:
                    index, item = ready.popleft()
                    yield index, [item]
    except BaseException:
        _close_all(procs, quiet=True)
        raise
    _close_all(procs, quiet=False)


def _emitters(
    graph: Graph, procs: dict[int, Processor], ready: deque[tuple[int, object]]
) -> dict[int, Emit]:
    """For each node, the function its processor calls with each output."""
    sinks = graph.sinks_of()
    emitters: dict[int, Emit] = {}
    # Children come after parents in graph.nodes, so build emitters from the end.
    for node in reversed(graph.nodes):
        outs = sinks.get(node.id, [])
        kids = [(procs[c], emitters[c]) for c in node.children]
        emitters[node.id] = _emitter(outs, kids, ready)
    return emitters


def _emitter(
    outs: list[int], kids: list[tuple[Processor, Emit]], ready: deque[tuple[int, object]]
) -> Emit:
    def emit(item: object) -> None:
        for index in outs:
            ready.append((index, item))
        for proc, kid_emit in kids:
            if not proc.exhausted:
                proc.process(item, kid_emit)

    return emit


def _alive(
    graph: Graph, procs: dict[int, Processor], sinks: dict[int, list[int]], node_id: int
) -> bool:
    """Whether anything downstream of ``node_id`` still wants items (limit, timeout)."""
    if node_id in procs and procs[node_id].exhausted:
        return False
    if node_id in sinks:
        return True
    return any(_alive(graph, procs, sinks, c) for c in graph.nodes[node_id].children)


def _close_all(procs: dict[int, Processor], *, quiet: bool) -> None:
    """Close every processor (class stages' close()), then raise the first failure unless quiet.

    Quiet when another exception is already on its way: that one is the news.
    """
    first: StageError | None = None
    for proc in procs.values():
        if proc.skipped:
            log_skipped(proc.name, proc.skipped)
        try:
            proc.close()
        except Exception as exc:
            if first is None:
                first = StageError(proc.name, "<none: in close()>", f"{type(exc).__name__}: {exc}")
                first.__cause__ = exc
    if first is not None and not quiet:
        raise first
