"""olympipe's ``olympipe.helpers.dag``: a graph kept as ``{node: [parents]}``.

olympipe keeps its running processes in such a mapping, shared through a Manager; here the
engine tracks its workers itself, and these functions work on any mutable mapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

__all__ = ["is_dead", "is_finished_with_errors", "make_dot_graph", "register_father_son"]


def is_dead(father_process_dag: Mapping[str, list[str]]) -> bool:
    """True when at most one node is left that is not marked ``"error"``."""
    return sum(1 for v in father_process_dag.values() if "error" not in v) <= 1


def is_finished_with_errors(father_process_dag: Mapping[str, list[str]]) -> bool:
    """True when some node is marked ``"error"`` and the graph is otherwise done."""
    has_errors = any("error" in v for v in father_process_dag.values())
    return has_errors and is_dead(father_process_dag)


def register_father_son(
    father_process_dag: MutableMapping[str, list[str]], father: str, son: str
) -> None:
    """Record ``son`` as a parent entry of ``father`` (olympipe's argument names)."""
    father_process_dag[father] = [*father_process_dag.get(father, []), son]


def make_dot_graph(debug_graph: str, father_process_dag: Mapping[str, list[str]]) -> str:
    """The graph in Graphviz dot (olympipe returned a ``graphviz.Digraph`` named
    ``debug_graph``; the text is what that object renders)."""
    lines = [f"digraph {_quote(debug_graph)} {{"]
    nodes = dict.fromkeys(
        [*father_process_dag, *(p for v in father_process_dag.values() for p in v)]
    )
    lines += [f"    {_quote(n)};" for n in nodes if n]
    for node, parents in father_process_dag.items():
        lines += [f"    {_quote(p)} -> {_quote(node)};" for p in parents if p]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
