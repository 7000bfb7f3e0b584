"""Wiring: pipeline nodes as users build them, and the flat graph a backend runs.

Users build a DAG of ``PNode`` objects (a source, a stage applied to a node, a
gather of nodes). ``compile_graph`` expands it into ``Graph``: nodes in
topological order, each with one operator, its parents and its children.
A ``PNode`` reached from several outputs compiles once (``run_all``
broadcast); a stage template used twice expands into two nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, cast

from ._hints import UNKNOWN, union_of
from ._ops import Op, Options
from ._template import Chain, Fan, Leaf, Template, check_feed, last_leaves, out_hint

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence, Sized


class SourceSpec:
    """Where items come from: an iterable, or a function called at run time to make one."""

    __slots__ = ("args", "data", "factory", "kwargs", "name", "weight")

    def __init__(
        self,
        data: Iterable[object] | None,
        factory: Callable[..., Iterable[object]] | None = None,
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
        name: str = "source",
        weight: Callable[[], int] | None = None,
    ) -> None:
        self.data = data
        self.factory = factory
        self.args = args
        self.kwargs = kwargs or {}
        self.name = name
        # A journaled run's source: its items are envelopes of about weight() items each.
        self.weight = weight

    def open(self) -> Iterable[object]:
        if self.factory is not None:
            return self.factory(*self.args, **self.kwargs)
        assert self.data is not None
        return self.data

    def length(self) -> int | None:
        """The number of items when the source knows it (a list, a range), else None."""
        try:
            return len(cast("Sized", self.data))
        except TypeError:
            return None


class SourceNode:
    __slots__ = ("hint", "spec")

    def __init__(self, spec: SourceSpec, hint: object = UNKNOWN) -> None:
        self.spec = spec
        self.hint = hint


class ApplyNode:
    __slots__ = ("hint", "parent", "template")

    def __init__(self, parent: PNode, template: Template, hint: object = UNKNOWN) -> None:
        self.parent = parent
        self.template = template
        self.hint = hint


class GatherNode:
    __slots__ = ("hint", "parents")

    def __init__(self, parents: tuple[PNode, ...], hint: object = UNKNOWN) -> None:
        self.parents = parents
        self.hint = hint


PNode: TypeAlias = SourceNode | ApplyNode | GatherNode


def apply(parent: PNode, template: Template) -> ApplyNode:
    """``parent >> template``, after checking that the items fit."""
    check_feed(producer_name(parent), parent.hint, template)
    return ApplyNode(parent, template, out_hint(template, parent.hint))


def gather(parents: Sequence[PNode]) -> GatherNode:
    """Several flows merged into one."""
    return GatherNode(tuple(parents), union_of(p.hint for p in parents))


def producer_name(node: PNode) -> str:
    if isinstance(node, SourceNode):
        return node.spec.name
    if isinstance(node, ApplyNode):
        return " | ".join(op.name for op in last_leaves(node.template))
    return "gather"


MERGE = Op("merge", None, Options(), label="merge")


class Node:
    """One node of a compiled graph: a source, or an operator with parents."""

    __slots__ = ("children", "id", "name", "op", "parents", "source")

    def __init__(
        self, node_id: int, name: str, op: Op | None, source: SourceSpec | None, parents: list[int]
    ) -> None:
        self.id = node_id
        self.name = name
        self.op = op
        self.source = source
        self.parents = parents
        self.children: list[int] = []

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.name!r}, parents={self.parents}, children={self.children})"


class Graph:
    """A compiled graph: nodes in topological order, and the node of each requested output."""

    __slots__ = ("nodes", "outputs")

    def __init__(self, nodes: list[Node], outputs: list[int]) -> None:
        self.nodes = nodes
        self.outputs = outputs

    @property
    def sources(self) -> list[Node]:
        return [n for n in self.nodes if n.source is not None]

    def sinks_of(self) -> dict[int, list[int]]:
        """For each node id, the indexes of the outputs it feeds directly."""
        sinks: dict[int, list[int]] = {}
        for index, node_id in enumerate(self.outputs):
            sinks.setdefault(node_id, []).append(index)
        return sinks


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.memo: dict[int, int] = {}  # id(PNode) -> node id
        self.keep: list[PNode] = []  # keeps memo keys alive while compiling
        self.names: dict[str, int] = {}

    def add(
        self, name: str, op: Op | None, parents: list[int], src: SourceSpec | None = None
    ) -> int:
        count = self.names.get(name, 0) + 1
        self.names[name] = count
        unique = name if count == 1 else f"{name}#{count}"
        node = Node(len(self.nodes), unique, op, src, parents)
        self.nodes.append(node)
        for p in parents:
            self.nodes[p].children.append(node.id)
        return node.id

    def visit(self, p: PNode) -> int:
        found = self.memo.get(id(p))
        if found is not None:
            return found
        if isinstance(p, SourceNode):
            node_id = self.add(p.spec.name, None, [], p.spec)
        elif isinstance(p, ApplyNode):
            node_id = self.expand(p.template, self.visit(p.parent))
        else:
            node_id = self.add("gather", MERGE, self.distinct([self.visit(q) for q in p.parents]))
        self.memo[id(p)] = node_id
        self.keep.append(p)
        return node_id

    def distinct(self, parents: list[int]) -> list[int]:
        """``parents`` with each repeat replaced by a pass-through node of its own: a flow
        gathered with itself (``p | p``) reaches the merge twice, by two edges."""
        seen: set[int] = set()
        out: list[int] = []
        for parent in parents:
            if parent in seen:
                parent = self.add("copy", MERGE, [parent])
            seen.add(parent)
            out.append(parent)
        return out

    def expand(self, t: Template, parent: int) -> int:
        if isinstance(t, Leaf):
            return self.add(t.op.name, t.op, [parent])
        if isinstance(t, Chain):
            for part in t.parts:
                parent = self.expand(part, parent)
            return parent
        assert isinstance(t, Fan)
        ends = [self.expand(b, parent) for b in t.branches]
        return self.add("fan-in", MERGE, ends)


def compile_graph(outputs: Sequence[PNode]) -> Graph:
    """Expand the pipelines ending at ``outputs`` into one graph; shared nodes compile once."""
    builder = _Builder()
    ids = [builder.visit(p) for p in outputs]
    return Graph(builder.nodes, ids)
