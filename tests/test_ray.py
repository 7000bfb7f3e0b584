"""The Ray backend: what the conformance tests cannot show (actors, the cluster, errors, Ray missing)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from test_property import _check, _settings, composite, leaf

from olympipe_typed import Pipeline, StageError, WorkerDied, run_all, source, stage
from olympipe_typed.backends.ray import _actor_options

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from hypothesis.strategies import DrawFn

pytestmark = pytest.mark.timeout(120)


def _pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


# -- actors --


def test_ray_each_worker_is_an_actor_process(ray_local: Any) -> None:
    """A stage with three workers runs in three processes, none of them the caller."""
    pipeline = source(range(30)) >> stage(_pid).options(workers=3)
    result = pipeline.run(backend="ray")
    assert [x for x, _ in result] == list(range(30))
    pids = {pid for _, pid in result}
    assert len(pids) == 3
    assert os.getpid() not in pids


def test_ray_joins_the_callers_ray(ray_local: Any) -> None:
    """With ray.init() already called, stages run in the caller's Ray job."""

    def job(x: int) -> str:
        import ray

        return str(ray.get_runtime_context().get_job_id())

    got = (source([1, 2]) >> stage(job)).run(backend="ray")
    assert got == [str(ray_local.get_runtime_context().get_job_id())] * 2


def test_ray_stream_break_kills_the_actors(
    ray_local: Any, stage_actors: Callable[..., list[int]]
) -> None:
    """Leaving a stream early over an infinite source leaves no stage actor alive."""
    stream = (source(itertools.count()) >> stage(_pid).options(workers=2)).stream(backend="ray")
    assert [x for x, _ in itertools.islice(stream, 5)] == [0, 1, 2, 3, 4]
    assert stage_actors()
    assert isinstance(stream, Generator)
    stream.close()
    assert stage_actors(wait=10.0) == []


def test_ray_stage_error_kills_the_actors(
    ray_local: Any, stage_actors: Callable[..., list[int]]
) -> None:
    """A failing stage raises StageError and leaves no stage actor alive."""

    def fail_on_7(x: int) -> int:
        if x == 7:
            msg = "seven"
            raise ValueError(msg)
        return x

    with pytest.raises(StageError, match="fail_on_7"):
        (source(itertools.count()) >> stage(fail_on_7) >> stage(_pid)).run(backend="ray")
    assert stage_actors(wait=10.0) == []


def test_ray_ctrl_c_kills_the_actors(
    ray_local: Any, stage_actors: Callable[..., list[int]]
) -> None:
    """Ctrl-C during a run raises KeyboardInterrupt in the caller and leaves no actor alive."""

    def slow(x: int) -> int:
        time.sleep(0.01)
        return x

    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            (source(itertools.count()) >> stage(slow)).run(backend="ray")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert stage_actors(wait=10.0) == []


def test_ray_worker_died_names_the_stage(ray_local: Any) -> None:
    """An actor whose process exits gives WorkerDied naming the stage."""

    def exit_on_two(x: int) -> tuple[int, int]:
        if x == 2:
            os._exit(3)
        return x, os.getpid()

    with pytest.raises(WorkerDied) as info:
        (source(range(5)) >> stage(name="fragile")(exit_on_two)).run(backend="ray")
    assert info.value.stage == "fragile"
    assert "fragile" in str(info.value)
    assert "Ray" in str(info.value)


def test_ray_worker_killed_names_the_stage(ray_local: Any) -> None:
    """An actor killed by SIGKILL, downstream of another stage, gives WorkerDied naming it."""

    def killed_on_two(p: tuple[int, int]) -> int:
        if p[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return p[0]

    pipeline = source(range(5)) >> stage(_pid) >> stage(name="oom_victim")(killed_on_two)
    with pytest.raises(WorkerDied, match="oom_victim"):
        pipeline.run(backend="ray")


def test_ray_unpicklable_source_item_names_the_stage(ray_local: Any) -> None:
    """A source item that cannot be pickled gives StageError naming the receiving stage and the item."""

    def same(x: object) -> object:
        return x

    items: list[object] = [1, threading.Lock()]
    with pytest.raises(StageError, match="receiver") as info:
        (source(items) >> stage(name="receiver")(same)).run(backend="ray")
    assert "lock" in info.value.item_repr


def test_ray_unpicklable_output_names_the_stage_that_made_it(ray_local: Any) -> None:
    """An output Ray cannot pickle, with a stage after it, gives StageError naming its maker."""

    def make_lock(x: int) -> object:
        return threading.Lock()

    def same(x: object) -> object:
        return x

    pipeline = source([1]) >> stage(name="lock_maker")(make_lock) >> stage(same)
    with pytest.raises(StageError, match="lock_maker") as info:
        pipeline.run(backend="ray")
    assert "pickle" in str(info.value)


def test_ray_large_arrays_pass_through_the_object_store(ray_local: Any) -> None:
    """Arrays of a megabyte go from actor to actor in order, and come back intact."""
    np = pytest.importorskip("numpy")

    def make(i: int) -> Any:
        return np.full(2**17, i, dtype=np.float64)

    def total(a: Any) -> float:
        return float(a.sum())

    got = (source(range(12)) >> stage(make) >> stage(total).options(workers=2)).run(backend="ray")
    assert got == [float(i * 2**17) for i in range(12)]


def test_ray_fluent_and_run_all_share_one_graph(ray_local: Any) -> None:
    """Siblings of one pipeline each get every item on Ray, computed once (run_all)."""
    base = Pipeline(range(20)).task(lambda x: x * 3, count=2)
    odd, even = base.filter(lambda x: x % 2 == 1), base.filter(lambda x: x % 2 == 0)
    assert run_all(odd, even, backend="ray") == (
        [x * 3 for x in range(20) if x % 2],
        [x * 3 for x in range(20) if not x % 2],
    )


# -- options --


def test_ray_resources_become_actor_options() -> None:
    """num_cpus, num_gpus and memory are actor options of their own, other keys custom
    resources; num_cpus is 0 unless given."""
    assert _actor_options(None) == {}
    wanted = {"num_cpus": 1, "num_gpus": 0.5, "memory": 2e9, "my_node": 1}
    assert _actor_options(wanted) == {
        "num_cpus": 1,
        "num_gpus": 0.5,
        "memory": 2e9,
        "resources": {"my_node": 1},
    }
    assert _actor_options({"my_node": 1}) == {"num_cpus": 0, "resources": {"my_node": 1}}


def test_ray_refuses_resources_no_node_has(ray_local: Any) -> None:
    """A stage asking for a resource no node has fails at once, naming the stage, instead of waiting."""
    gpu = stage(_pid).options(resources={"num_gpus": 1}, name="on_gpu")
    with pytest.raises(StageError, match=r"on_gpu.*no node of the Ray cluster has"):
        (source([1]) >> gpu).run(backend="ray")


def test_ray_refuses_more_workers_than_the_cluster_holds(ray_local: Any) -> None:
    """Workers that together hold more CPUs than the cluster has fail at once, naming the stage."""
    greedy = stage(_pid).options(resources={"num_cpus": 1}, workers=3, name="greedy")
    with pytest.raises(StageError, match=r"greedy.*more than the Ray cluster has"):
        (source([1]) >> greedy).run(backend="ray")


# -- property: random graphs give the inline result --


@st.composite
def small_graphs(draw: DrawFn) -> list[Pipeline[int]]:
    """test_property's graphs, one level of fan-out less, with 12 actors at most: every actor
    costs a process start (about half a second of CPU)."""
    n = draw(st.integers(0, 30))
    base = source(range(n)) >> draw(leaf())
    outputs = [base >> draw(composite(depth=1)) for _ in range(draw(st.integers(1, 2)))]
    if draw(st.booleans()):
        outputs.append(outputs[0] | (base >> draw(leaf())))
    assume(_actors(outputs) <= 12)
    return outputs


def _actors(pipes: list[Pipeline[int]]) -> int:
    """How many actors a run of ``pipes`` starts."""
    from olympipe_typed._graph import compile_graph
    from olympipe_typed.backends.ray import _worker_count

    graph = compile_graph([p._node for p in pipes])
    return sum(_worker_count(n) for n in graph.nodes if n.op is not None)


@settings(
    _settings(6),
    suppress_health_check=[
        *_settings(6).suppress_health_check,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(small_graphs())
def test_property_ray_equals_inline(ray_local: Any, pipes: list[Pipeline[int]]) -> None:
    """Random graphs on local Ray give the inline result."""
    note(f"{_actors(pipes)} actors")
    _check(pipes, backend="ray")


# -- a simulated two-node cluster --


def where(x: int) -> tuple[int, str]:
    """The item and the Ray node the stage ran on."""
    import ray

    return x, str(ray.get_runtime_context().get_node_id())


def also_where(p: tuple[int, str]) -> tuple[int, str, str]:
    """The item, where the first stage ran, and where this one runs."""
    import ray

    return p[0], p[1], str(ray.get_runtime_context().get_node_id())


@pytest.fixture
def two_nodes(ray_session: Any) -> Iterator[dict[str, str]]:
    """Two Ray nodes on this machine, one with the resource "node_a", one with "node_b";
    yields the node id of each. The session's local Ray is stopped meanwhile."""
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    if ray_session.is_initialized():
        ray_session.shutdown()
    cluster: Any = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"node_a": 1}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, resources={"node_b": 1})
        ray_session.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        nodes: dict[str, str] = {}
        for node in ray_session.nodes():
            for name in ("node_a", "node_b"):
                if name in node["Resources"]:
                    nodes[name] = node["NodeID"]
        yield nodes
    finally:
        ray_session.shutdown()
        cluster.shutdown()


@pytest.mark.timeout(180)
def test_ray_stages_pinned_to_nodes_by_resources(two_nodes: dict[str, str]) -> None:
    """Stages asking for a node's custom resource run on that node, with 2 workers there too."""
    first = stage(where).options(resources={"node_a": 0.5}, workers=2)
    second = stage(also_where).options(resources={"node_b": 1})
    result = (source(range(10)) >> first >> second).run(backend="ray")
    assert [x for x, _, _ in result] == list(range(10))
    assert {a for _, a, _ in result} == {two_nodes["node_a"]}
    assert {b for _, _, b in result} == {two_nodes["node_b"]}


# -- without Ray, and before ray.init() --


def test_ray_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """backend="ray" without Ray installed raises ImportError naming the extra to install."""
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'olympipe_typed\[ray\]'"):
        source([1]).run(backend="ray")


STANDALONE = """
import sys
import olympipe_typed
from olympipe_typed import source, stage
assert "ray" not in sys.modules, "importing olympipe_typed imported ray"

def double(x: int) -> int:
    return 2 * x

if __name__ == "__main__":
    print((source(range(4)) >> stage(double)).run(backend="ray"))
    import ray
    print(ray.is_initialized())
    ray.shutdown()
"""


def test_ray_starts_a_local_ray_and_import_never_imports_ray(tmp_path: Any) -> None:
    """A script that never calls ray.init() runs on a local Ray the backend starts; importing
    olympipe_typed does not import ray."""
    pytest.importorskip("ray")
    script = tmp_path / "standalone.py"
    script.write_text(textwrap.dedent(STANDALONE))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[0,", "2,", "4,", "6]", "True"]
