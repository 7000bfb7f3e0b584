"""The physical plan: which stages run fused in one group of workers, and how many workers
each group gets (API.md §7).

What the user writes is the logical graph, one node per stage. The process backend runs a
*physical* graph made from it here: a chain of adjacent function stages that leave the
choice of workers to the engine (``workers=None``) becomes one node, a *group*, whose
workers pass each item through every stage of the chain without crossing a process
boundary. Everything else stays a group of one stage, as written:

- an explicit ``workers=n``, ``queue_size``, ``resources``, ``ordered=False``;
- class stages (each worker builds its own instance: a model, say);
- stateful kinds (batch, reduce, limit, timeouts) and merges;
- stages with ``item_timeout`` or ``max_items_per_worker`` (their function runs in a child
  process of its own).

A chain ends where the flow forks or merges, and at a stage whose outputs the caller reads.

Groups of stages that leave workers to the engine (*auto* groups) get one worker process
per core; when several auto groups share the machine, each is given a share of the cores
(its *active* workers, at least one), re-divided during the run as their measured costs
change (``backends.process.run``). ``plan="per_stage"`` turns all of this off: one group per
stage, one worker where none is given.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

from ._graph import Graph, Node
from ._ops import ClassSpec, Op, Options, Processor, count_items
from ._report import Timeline

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._failures import Failure

PlanMode: TypeAlias = Literal["auto", "per_stage"]


def check_plan(plan: object) -> PlanMode:
    """``plan`` as given, or ValueError naming the choices."""
    if plan == "auto":
        return "auto"
    if plan == "per_stage":
        return "per_stage"
    msg = f"plan must be 'auto' or 'per_stage' (got {plan!r})"
    raise ValueError(msg)


def cores() -> int:
    """CPUs this process may run on: the planner's budget."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fusable(op: Op | None, *, as_if_unhinted: bool = False) -> bool:
    """Whether the planner may fuse this stage with its neighbours and size its workers (or
    could, ``as_if_unhinted``, were its ``workers=`` left out)."""
    if op is None or op.kind not in ("map", "flat", "filter") or op.fn is None:
        return False
    opts = op.options
    return (
        (opts.workers is None or as_if_unhinted)
        and not isinstance(op.fn, ClassSpec)
        and opts.ordered
        and opts.queue_size is None
        and opts.resources is None
        and not op.isolated
        and not op.waits
    )


def sizable(op: Op | None) -> bool:
    """Whether the planner chooses this stage's workers (a function stage, no ``workers=``)."""
    return (
        op is not None
        and op.options.workers is None
        and op.kind in ("map", "flat", "filter")
        and op.fn is not None
        and not isinstance(op.fn, ClassSpec)
        and op.options.resources is None
        and op.options.ordered
        and not op.isolated
        and not op.waits
    )


@final
class Group:
    """One group of the physical plan: its stages (as written), and its workers over time."""

    __slots__ = ("auto", "history", "stages", "workers")

    def __init__(self, stages: tuple[str, ...], workers: int, *, auto: bool) -> None:
        #: The stages' names, in the order an item goes through them.
        self.stages = stages
        #: Worker processes (or threads) started for the group.
        self.workers = workers
        #: Whether the planner sized the group (else it is as written).
        self.auto = auto
        #: (seconds since the run started, workers at work) at the start and at each change.
        self.history: list[tuple[float, int]] = [(0.0, workers)]

    @property
    def name(self) -> str:
        """The stages joined by ``+``: how the plan shows the group."""
        return "+".join(self.stages)

    @property
    def fused(self) -> bool:
        return len(self.stages) > 1

    def __repr__(self) -> str:
        return f"Group({self.name!r}, workers={self.workers}, auto={self.auto})"

    def describe(self) -> str:
        """One line: the stages, how they run, and the workers over time."""
        how = "fused" if self.fused else "alone"
        who = "chosen by the planner" if self.auto else "as written"
        counts = [n for _, n in self.history]
        over = " -> ".join(str(n) for n in _runs(counts))
        workers = (
            f"{over} workers"
            if len(set(counts)) > 1
            else f"{counts[0]} worker" + ("s" if counts[0] > 1 else "")
        )
        return f"{self.name}: {how}, {workers} ({who})"


def _runs(values: list[int]) -> list[int]:
    """``values`` without consecutive repeats."""
    out: list[int] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


@final
class Plan:
    """The physical plan a run used: ``report.plan``."""

    __slots__ = ("apart", "crossings", "groups", "mode")

    def __init__(
        self, mode: str, groups: list[Group], apart: tuple[str, ...] = (), crossings: int = 0
    ) -> None:
        #: "auto", "per_stage", or the backend's own ("inline", "ray": one group per stage).
        self.mode = mode
        self.groups = tuple(groups)
        #: The stages that run in processes of their own only because ``workers=`` was given:
        #: without it, the planner would fuse each of them with a neighbour.
        self.apart = apart
        #: How many more process boundaries each item crosses for that.
        self.crossings = crossings

    def group_of(self, stage: str) -> Group:
        """The group that ran the stage called ``stage``."""
        for g in self.groups:
            if stage in g.stages:
                return g
        msg = f"no stage named {stage!r} in this plan"
        raise KeyError(msg)

    def __str__(self) -> str:
        lines = [f"plan ({self.mode}):"]
        lines += [f"  {g.describe()}" for g in self.groups]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Plan({self.mode!r}, {list(self.groups)!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "apart": list(self.apart),
            "crossings": self.crossings,
            "groups": [
                {
                    "stages": list(g.stages),
                    "workers": g.workers,
                    "auto": g.auto,
                    "history": [list(h) for h in g.history],
                }
                for g in self.groups
            ],
        }


def logical_plan(graph: Graph, mode: str) -> Plan:
    """One group per stage, as written: the plan of backends that do not fuse."""
    return Plan(
        mode,
        [
            Group((n.name,), n.op.options.workers or 1, auto=False)
            for n in graph.nodes
            if n.op is not None
        ],
    )


def physical(
    graph: Graph, mode: PlanMode, *, budget: int, threads: bool
) -> tuple[Graph, list[Group | None], Plan]:
    """The physical graph for ``graph`` (sources kept, chains fused), each physical node's
    group (None for sources), and the plan to report.

    ``budget``: the cores to share among auto groups. Threads share one interpreter: an auto
    group of threads gets one worker (give I/O stages ``workers=`` of their own).
    """
    if mode == "per_stage":
        return graph, [_as_written(n) for n in graph.nodes], logical_plan(graph, mode)
    chain_of, chains = _chains(graph, as_if_unhinted=False)
    # What the stages' workers= cost: the stages kept apart by it alone, and the process
    # boundaries an item crosses for that (threads cross none: no advice for them).
    unhinted = chains if threads else _chains(graph, as_if_unhinted=True)[1]
    apart = tuple(
        n.name
        for c in unhinted
        if len(c) > 1
        for n in c
        if n.op is not None and n.op.options.workers is not None
    )
    auto = [c for c in chains if all(sizable(n.op) for n in c)]
    # A message goes to one worker, and the source's items are at least as many as its
    # messages: no group gets more workers than a list, tuple or range source has items.
    items = source_items(graph)
    per_group = 1 if threads else max(1, budget if items is None else min(budget, items))
    new_id = {id(c): i for i, c in enumerate(chains)}
    nodes: list[Node] = []
    groups: list[Group | None] = []
    for c in chains:
        first, last = c[0], c[-1]
        op: Op | None = first.op
        name = first.name
        if len(c) > 1:
            op = FusedOp([(n.name, n.op) for n in c if n.op is not None])
            name = "+".join(n.name for n in c)
        parents = [new_id[id(chain_of[p])] for p in first.parents]
        node = Node(len(nodes), name, op, first.source, parents)
        nodes.append(node)
        for p in parents:
            nodes[p].children.append(node.id)
        if first.op is None:
            groups.append(None)
        elif c in auto:  # threads: fused, but as many workers as written (one)
            groups.append(Group(tuple(n.name for n in c), per_group, auto=not threads))
        else:
            groups.append(
                _as_written(last) if len(c) == 1 else Group(tuple(n.name for n in c), 1, auto=False)
            )
    # Several auto groups share the cores: each starts with its share at work (the run
    # moves them by what their items cost), and one process per core started.
    sized = [g for g in groups if g is not None and g.auto and g.workers > 1]
    for g in sized:
        g.history = [(0.0, max(1, g.workers // len(sized)))]
    physical_graph = Graph(nodes, [new_id[id(chain_of[o])] for o in graph.outputs])
    plan = Plan(mode, [g for g in groups if g is not None], apart, len(chains) - len(unhinted))
    return physical_graph, groups, plan


def _chains(
    graph: Graph, *, as_if_unhinted: bool
) -> tuple[dict[int, list[Node]], list[list[Node]]]:
    """The chains of adjacent stages that run fused (``fusable``), by logical node, and in
    order: one chain per physical node."""
    outputs = set(graph.outputs)
    chain_of: dict[int, list[Node]] = {}
    chains: list[list[Node]] = []
    for node in graph.nodes:
        parent = graph.nodes[node.parents[0]] if len(node.parents) == 1 else None
        if (
            parent is not None
            and fusable(node.op, as_if_unhinted=as_if_unhinted)
            and fusable(parent.op, as_if_unhinted=as_if_unhinted)
            and len(parent.children) == 1
            and parent.id not in outputs
            and parent.op is not None
            and node.op is not None
            and parent.op.enveloped == node.op.enveloped
        ):
            chain = chain_of[parent.id]
            chain.append(node)
        else:
            chain = [node]
            chains.append(chain)
        chain_of[node.id] = chain
    return chain_of, chains


def source_items(graph: Graph) -> int | None:
    """How many items the graph's sources give in all, when they say (a list, tuple or range
    given as it is); else None."""
    total = 0
    for node in graph.nodes:
        spec = node.source
        if spec is None:
            continue
        if spec.factory is not None or not isinstance(spec.data, (list, tuple, range)):
            return None
        total += len(spec.data)
    return total


def _as_written(node: Node) -> Group | None:
    if node.op is None:
        return None
    one = node.op.stateful or len(node.parents) > 1
    return Group((node.name,), 1 if one else node.op.options.workers or 1, auto=False)


# --- running a fused group: one item through several stages, in one worker ---


class FusedOp(Op):
    """A physical node's operator that runs several stages' operators in turn."""

    __slots__ = ("stages",)

    def __init__(self, stages: list[tuple[str, Op]]) -> None:
        # At most one output per input (maps and filters): outputs keep their input's merge
        # key; else several, numbered (as a flat stage's).
        kind: Literal["map", "flat"] = (
            "map" if all(op.kind in ("map", "filter") for _, op in stages) else "flat"
        )
        label = "+".join(name for name, _ in stages)
        super().__init__(kind, None, Options(), label=label, enveloped=stages[0][1].enveloped)
        self.stages = stages

    def __repr__(self) -> str:
        return f"FusedOp({[name for name, _ in self.stages]})"

    def replace(self, **changes: Any) -> Op:
        raise NotImplementedError  # pragma: no cover - never asked of a physical node

    def open(
        self,
        name: str | None = None,
        *,
        check_types: bool = False,
        processes: bool = False,
        shipped: bytes | None = None,
        workers: int = 1,
    ) -> Processor:
        del name, shipped, workers  # no I/O stage is fused
        return FusedProcessor(self, check_types=check_types, processes=processes)


class FusedProcessor(Processor):
    """The ``Processor`` of a fused group: each message goes through every stage's own
    processor (their retries, ``on_error`` and type checks unchanged), and each stage's
    busy time and item counts are kept apart for the run report."""

    def __init__(self, op: FusedOp, *, check_types: bool, processes: bool) -> None:
        # Not Processor.__init__: the stages' own processors do the work.
        self.op = op
        self.procs: list[Processor] = []
        try:
            for name, stage_op in op.stages:
                self.procs.append(stage_op.open(name, check_types=check_types, processes=processes))
        except BaseException:
            self.close()
            raise
        self.names = [name for name, _ in op.stages]
        self.name = self.names[-1]  # outputs are the last stage's
        self.exhausted = False
        self.skipped = 0
        self.failures: list[Failure[Any]] = []
        self.current = 0  # the stage an item is in: where an error or a death happened
        self.where: Callable[[int], None] | None = None  # tells the caller, for a death
        count = len(self.procs)
        self.busy = [0.0] * count
        self.cpu = [0.0] * count  # each stage's own CPU time (a thread's clock: cheap)
        self.items_in = [0] * count
        self.items_out = [0] * count
        self.timelines: list[Timeline] = [Timeline(time.perf_counter()) for _ in range(count)]

    def take_failures(self) -> list[tuple[int, list[Failure[Any]]]]:
        """The failures collected since the last call, by stage index."""
        by_stage: dict[int, list[Failure[Any]]] = {}
        index = {name: i for i, name in enumerate(self.names)}
        for failure in self.failures:
            by_stage.setdefault(index[failure.stage], []).append(failure)
        self.failures = []
        return sorted(by_stage.items())

    @property
    def stage_name(self) -> str:
        """The stage an item was in last."""
        return self.names[self.current]

    def _enter(self, i: int) -> None:
        self.current = i
        if self.where is not None:
            self.where(i)

    def process_many(self, items: list[Any], out: list[Any]) -> None:
        self._run(items, out, 0)

    def _run(self, items: list[Any], out: list[Any], start: int) -> None:
        clock = time.perf_counter
        enveloped = self.op.enveloped
        cpu_clock = time.thread_time
        t, cpu = clock(), cpu_clock()
        last = len(self.procs) - 1
        for i in range(start, last + 1):
            self._enter(i)
            self.items_in[i] += count_items(items, enveloped)
            outputs: list[Any] = []
            proc = self.procs[i]
            proc.process_many(items, outputs)
            if proc.failures:  # the worker hands them over (take_failures)
                self.failures += proc.failures
                proc.failures = []
            items = outputs
            now, cpu_now = clock(), cpu_clock()
            self.busy[i] += now - t
            self.cpu[i] += cpu_now - cpu
            self.timelines[i].add(t, now)
            t, cpu = now, cpu_now
            self.items_out[i] += count_items(items, enveloped)
            if not items:
                break
        else:
            out += items

    def process(self, item: object, emit: Callable[[object], None]) -> None:
        out: list[Any] = []
        self._run([item], out, 0)
        for value in out:
            emit(value)

    def deadline(self) -> float | None:
        return None

    def poll(self, now: float, emit: Callable[[object], None]) -> None:
        del now, emit

    def flush(self, emit: Callable[[object], None]) -> None:
        """Each stage's flush, passed through the stages after it."""
        for i, proc in enumerate(self.procs):
            flushed: list[Any] = []
            self._enter(i)
            proc.flush(flushed.append)
            out: list[Any] = []
            if flushed and i + 1 < len(self.procs):
                self._run(flushed, out, i + 1)
            else:
                out = flushed
            for value in out:
                emit(value)

    def skipped_by_stage(self) -> list[tuple[str, int]]:
        return [(n, p.skipped) for n, p in zip(self.names, self.procs, strict=True) if p.skipped]

    def close(self) -> None:
        """Every stage's close(), the first error raised after all have run."""
        first: BaseException | None = None
        for i, proc in enumerate(self.procs):
            self.current = i
            try:
                proc.close()
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first
