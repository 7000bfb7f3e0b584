"""A compiled graph as text: Mermaid (renders on GitHub, in notebooks) and Graphviz dot."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._graph import Graph, Node


def label(node: Node) -> str:
    """What a node is called in a drawing: its name, its kind, and its workers when several."""
    if node.op is None:
        return node.name
    text = node.name
    if node.op.kind in ("flat", "filter"):
        text = f"{text} ({node.op.kind})"
    workers = node.op.options.workers or 1
    if workers > 1 and not node.op.stateful and len(node.parents) == 1:
        text = f"{text} ×{workers}"
        if not node.op.options.ordered:
            text += ", unordered"
    return text


def to_mermaid(graph: Graph) -> str:
    """``flowchart LR`` with one box per node: a stadium for sources, a circle for merges."""
    lines = ["flowchart LR"]
    for node in graph.nodes:
        text = _escape_mermaid(label(node))
        if node.source is not None:
            lines.append(f'    n{node.id}(["{text}"])')
        elif node.op is not None and node.op.kind == "merge":
            lines.append(f'    n{node.id}(("{text}"))')
        else:
            lines.append(f'    n{node.id}["{text}"]')
    for node in graph.nodes:
        lines.extend(f"    n{node.id} --> n{child}" for child in node.children)
    for index, node_id in enumerate(graph.outputs):
        lines.append(f'    out{index}[/"output {index}"/]')
        lines.append(f"    n{node_id} --> out{index}")
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    """A Graphviz ``digraph``, left to right."""
    lines = ["digraph pipeline {", "    rankdir=LR;", "    node [shape=box];"]
    for node in graph.nodes:
        text = _escape_dot(label(node))
        if node.source is not None:
            shape = ' shape="cylinder"'
        elif node.op is not None and node.op.kind == "merge":
            shape = ' shape="circle"'
        else:
            shape = ""
        lines.append(f'    n{node.id} [label="{text}"{shape}];')
    for node in graph.nodes:
        lines.extend(f"    n{node.id} -> n{child};" for child in node.children)
    for index, node_id in enumerate(graph.outputs):
        lines.append(f'    out{index} [label="output {index}" shape="plaintext"];')
        lines.append(f"    n{node_id} -> out{index};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _escape_mermaid(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _escape_dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
