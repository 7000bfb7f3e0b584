"""Run by test_ray in a process of its own: a two-node Ray cluster on this machine, one with the
resource "node_a", one with "node_b", and a pipeline pinned to them; prints the node ids and the
results as JSON.

Shutting such a cluster down in the pytest process made every fork-started worker after it die
of SIGSEGV on Python 3.13, in Ray's GlobalStateAccessor destructor (issue 22), hence the process.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from olympipe_typed import source, stage

# Ray's annotations are partial: typed as Any, its calls pass the strict type checkers.
ray: Any = importlib.import_module("ray")
cluster_utils: Any = importlib.import_module("ray.cluster_utils")


def where(x: int) -> tuple[int, str]:
    """The item and the Ray node the stage ran on."""
    return x, str(ray.get_runtime_context().get_node_id())


def also_where(p: tuple[int, str]) -> tuple[int, str, str]:
    """The item, where the first stage ran, and where this one runs."""
    return p[0], p[1], str(ray.get_runtime_context().get_node_id())


def main() -> None:
    """Start the cluster, run the pipeline on it, stop the cluster, print what was seen."""
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"node_a": 1}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, resources={"node_b": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        nodes: dict[str, str] = {}
        for node in ray.nodes():
            for name in ("node_a", "node_b"):
                if name in node["Resources"]:
                    nodes[name] = node["NodeID"]
        first = stage(where).options(resources={"node_a": 0.5}, workers=2)
        second = stage(also_where).options(resources={"node_b": 1})
        result = (source(range(10)) >> first >> second).run(backend="ray")
    finally:
        ray.shutdown()
        cluster.shutdown()
    found: dict[str, Any] = {"nodes": nodes, "result": result}
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    main()
