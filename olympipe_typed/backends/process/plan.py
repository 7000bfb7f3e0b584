"""The pipes of a run: for each physical node, the connections its workers read and write,
and how they read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .pipe import pipe

if TYPE_CHECKING:
    from ..._graph import Graph, Node
    from ..._planner import Group
    from .pipe import PipeEnd


class Pipes:
    """Pipes for one run: for each node, the connections its workers read and write.

    ``graph`` is the physical graph (``_planner.physical``): a fused group is one node.
    """

    def __init__(self, graph: Graph, groups: list[Group | None]) -> None:
        self.graph = graph
        self.groups = groups
        self.keyed = any(len(n.parents) > 1 for n in graph.nodes)
        self.workers = {
            n.id: 1 if g is None else g.workers for n, g in zip(graph.nodes, groups, strict=True)
        }
        # Free nodes take messages in arrival order: an ordered=False stage with several
        # workers, and everything after it (once order is given up, there is none to keep).
        self.free: dict[int, bool] = {}
        # Nodes downstream of a time-based stage, whose messages may come in parts (partial).
        partial: dict[int, bool] = {}
        # Ordered nodes whose several workers each take the next message when free, and send
        # its outputs under its number: their readers restore the order (``_Reorder``).
        self.ooo: set[int] = set()
        for n in graph.nodes:
            unordered = n.op is not None and not n.op.options.ordered and self.workers[n.id] > 1
            self.free[n.id] = unordered or any(self.free[p] for p in n.parents)
            partial[n.id] = (n.op is not None and n.op.seconds is not None) or any(
                partial[p] for p in n.parents
            )
            if (
                self.workers[n.id] > 1
                and not self.free[n.id]
                and not self.keyed
                and not any(partial[p] for p in n.parents)
            ):
                self.ooo.add(n.id)
        # Readers of out-of-order nodes that restore order: one-worker nodes, and the caller's
        # outputs (by -1 - index). Each has a slot where it says how far it has come.
        self.reorderers = [
            n.id
            for n in graph.nodes
            if self.workers[n.id] == 1 and any(p in self.ooo for p in n.parents)
        ] + [
            -1 - i
            for i, node_id in enumerate(graph.outputs)
            if node_id in self.ooo and not self.free[node_id]
        ]
        # reads[(node, worker)][parent] -> connections indexed by parent worker
        self.reads: dict[tuple[int, int], dict[int, list[PipeEnd]]] = {}
        # writes[(node, worker)][child] -> connections indexed by child worker
        self.writes: dict[tuple[int, int], dict[int, list[PipeEnd]]] = {}
        # the caller reads each output node: outputs[index] -> connections by worker
        self.outputs: list[list[PipeEnd]] = []
        self.child_side: list[PipeEnd] = []  # ends the caller must close after start
        self.credit_slots: dict[tuple[int, int, int, int], int] = {}
        # Stages whose workers take at most this many queued items each (queue_size).
        self.limits = {
            n.id: n.op.options.queue_size
            for n in graph.nodes
            if n.op is not None and n.op.options.queue_size is not None
        }
        # Stages with several workers whose messages go to a free worker: unordered ones, and
        # ordered ones whose readers restore the order.
        self.dealt = {
            n.id
            for n in graph.nodes
            if (self.free[n.id] or n.id in self.ooo) and self.workers[n.id] > 1
        }
        # Workers at work in each dealt node at the start (the planner moves auto groups').
        self.active = {n: _at_work(groups[n], self.workers[n]) for n in self.dealt}
        for node in graph.nodes:
            for child_id in node.children:
                self._connect(node.id, child_id)
        for node_id in graph.outputs:
            conns: list[PipeEnd] = []
            for w in range(self.workers[node_id]):
                r, s = pipe()
                self.writes.setdefault((node_id, w), {}).setdefault(
                    -1 - len(self.outputs), []
                ).append(s)
                self.child_side.append(s)
                conns.append(r)
            self.outputs.append(conns)

    def _connect(self, parent: int, child: int) -> None:
        for pw in range(self.workers[parent]):
            for cw in range(self.workers[child]):
                r, s = pipe()
                self.writes.setdefault((parent, pw), {}).setdefault(child, []).append(s)
                self.reads.setdefault((child, cw), {}).setdefault(parent, []).append(r)
                self.child_side += [r, s]
                if child in self.dealt or child in self.limits:
                    self.credit_slots[(parent, pw, child, cw)] = len(self.credit_slots)

    def mode(self, node: Node) -> str:
        """How the node's workers read: "free" (arrival order, renumbered), "dealt" (arrival
        order, numbers kept), "reorder" (in number order, from an out-of-order parent) or
        "seq" (message ``seq`` from the one pipe that carries it)."""
        if self.free[node.id]:
            return "free"
        if node.id in self.ooo:
            return "dealt"
        if node.id in self.reorderers:
            return "reorder"
        return "seq"


def _at_work(group: Group | None, workers: int) -> int:
    """The workers of a node at work at the start of the run."""
    return workers if group is None else group.history[-1][1]
