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
from typing import TYPE_CHECKING, Any, cast

from .._errors import SourceError, StageError
from .._ops import log_skipped
from .._report import WorkerStats

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .._graph import Graph
    from .._ops import Emit, Processor
    from .._report import Recorder


def execute(
    graph: Graph, *, check_types: bool = False, recorder: Recorder | None = None
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``graph``; yield (output index, [item]) as items reach the outputs."""
    ready: deque[tuple[int, object]] = deque()
    procs: dict[int, Processor] = {}
    stats: dict[int, WorkerStats] = {}
    nested: dict[int, float] = {}  # by id(stats): CPU time a node spent in its children
    try:
        for node in graph.nodes:
            if node.op is not None:
                procs[node.id] = node.op.open(node.name, check_types=check_types)
                stats[node.id] = WorkerStats(time.perf_counter())
        emitters = _emitters(graph, procs, ready, stats, nested)
        timed = [(k, p) for k, p in procs.items() if p.op.seconds is not None]
        sinks = graph.sinks_of()
        limited = any(p.op.kind in ("limit", "timeout") for p in procs.values())
        collecting = [k for k, p in procs.items() if p.op.options.on_error == "collect"]
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
                if collecting:
                    _hand_failures(graph, procs, stats, collecting, recorder)
                if recorder is not None and recorder.progress is not None:
                    for k, st in stats.items():
                        recorder.live(graph.nodes[k].name, 0, st.items_in, st.items_out)
                while ready:
                    index, item = ready.popleft()
                    yield index, [item]
        for node in graph.nodes:
            if node.op is not None:
                procs[node.id].flush(emitters[node.id])
                if collecting:
                    _hand_failures(graph, procs, stats, collecting, recorder)
                while ready:
                    index, item = ready.popleft()
                    yield index, [item]
    except BaseException:
        _close_all(procs, quiet=True)
        _record(graph, stats, procs, recorder, nested)
        raise
    _record(graph, stats, procs, recorder, nested)
    _close_all(procs, quiet=False)


def _hand_failures(
    graph: Graph,
    procs: dict[int, Processor],
    stats: dict[int, WorkerStats],
    collecting: list[int],
    recorder: Recorder | None,
) -> None:
    """Hand the items that failed under on_error="collect" to the report, as they fail."""
    for node_id in collecting:
        proc = procs[node_id]
        if proc.failures:
            failures, proc.failures = proc.failures, []
            if recorder is not None:
                recorder.fail(graph.nodes[node_id].name, 0, failures, stats[node_id].items_in)


def _record(
    graph: Graph,
    stats: dict[int, WorkerStats],
    procs: dict[int, Processor],
    recorder: Recorder | None,
    nested: dict[int, float],
) -> None:
    """Hand each node's numbers to the report. Time in a node's children was counted in
    the node too (they run inside its emit): it is taken out here."""
    if recorder is None:
        return
    end = time.perf_counter()
    for node_id, st in stats.items():
        st.ended = end
        st.busy = max(0.0, st.busy - st.blocked)  # blocked held the time spent in children
        st.cpu = max(0.0, st.cpu - nested.get(id(st), 0.0))
        st.blocked = 0.0
        recorder.stats(graph.nodes[node_id].name, st)
        if procs[node_id].skipped:
            recorder.skip(graph.nodes[node_id].name, procs[node_id].skipped)


def _emitters(
    graph: Graph,
    procs: dict[int, Processor],
    ready: deque[tuple[int, object]],
    stats: dict[int, WorkerStats],
    nested: dict[int, float],
) -> dict[int, Emit]:
    """For each node, the function its processor calls with each output."""
    sinks = graph.sinks_of()
    enveloped = any(p.op.enveloped for p in procs.values())
    emitters: dict[int, Emit] = {}
    # Children come after parents in graph.nodes, so build emitters from the end.
    for node in reversed(graph.nodes):
        outs = sinks.get(node.id, [])
        kids = [(procs[c], emitters[c], stats[c]) for c in node.children]
        emitters[node.id] = _emitter(outs, kids, ready, stats.get(node.id), nested, enveloped)
    return emitters


def _emitter(
    outs: list[int],
    kids: list[tuple[Processor, Emit, WorkerStats]],
    ready: deque[tuple[int, object]],
    mine: WorkerStats | None,
    nested: dict[int, float],
    enveloped: bool,
) -> Emit:
    clock, cpu_clock = time.perf_counter, time.thread_time

    def emit(item: object) -> None:
        # A journaled run's items are envelopes: the report counts the items inside them.
        n = len(cast("tuple[int, int, list[object]]", item)[2]) if enveloped else 1
        if mine is not None:
            mine.items_out += n
        for index in outs:
            ready.append((index, item))
        for proc, kid_emit, st in kids:
            if not proc.exhausted:
                st.items_in += n
                start, cpu = clock(), cpu_clock()
                proc.process(item, kid_emit)
                end = clock()
                st.busy += end - start
                spent = cpu_clock() - cpu
                st.cpu += spent
                st.timeline.add(start, end)
                if mine is not None:  # the parent's time spent in its children
                    mine.blocked += end - start
                    nested[id(mine)] = nested.get(id(mine), 0.0) + spent

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
