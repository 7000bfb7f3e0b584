"""The Ray backend: what the conformance tests cannot show (actors, the cluster, errors, Ray missing)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from malloc_child import SIZE, glibc_with_mallinfo2, probe
from test_fluent import _two_bursts
from test_property import _check, _settings, composite, leaf

from olympipe_typed import Pipeline, StageError, WorkerDied, run_all, source, stage
from olympipe_typed.backends import ray as ray_backend
from olympipe_typed.backends.ray import ActorSpec, OlympipeStage, _actor_options

if TYPE_CHECKING:
    from collections.abc import Callable

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


# -- a simulated two-node cluster, in a process of its own --

# After a cluster_utils cluster was shut down in the pytest process, every fork-started worker
# died of SIGSEGV on Python 3.13, in Ray's GlobalStateAccessor destructor (issue 22). So the
# cluster, the pipeline run on it and Ray's daemons live in a child process and its session.
CLUSTER_CHILD = Path(__file__).with_name("ray_cluster_child.py")


def _session(sid: int) -> list[psutil.Process]:
    """The processes of session ``sid`` that still run (a zombie only waits for its reaper)."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def _end_session(child: subprocess.Popen[bytes], wait: float) -> list[str]:
    """Kill ``child``'s process group if it still runs, wait up to ``wait`` seconds for the rest
    of its session to exit, then kill what is left; returns the command lines killed then."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + wait
    while (left := _session(child.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Ray's workers each lead a process group of their own: only the session holds them all.
    killed: list[str] = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            killed.append(" ".join(proc.cmdline()[:2]))
            proc.kill()
    psutil.wait_procs(left, timeout=5.0)
    return killed


@pytest.mark.timeout(180)
def test_ray_stages_pinned_to_nodes_by_resources(tmp_path: Path) -> None:
    """Stages asking for a node's custom resource run on that node, with 2 workers there too."""
    pytest.importorskip("ray.cluster_utils")
    # Ray's files, and the address file a bare ray.init() joins, stay with this cluster; the path
    # is short because Ray's socket paths must fit in 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="ray-")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = ray_tmp
    out, err = tmp_path / "out.json", tmp_path / "err.txt"
    try:
        # Files, not pipes: a Ray daemon that inherited a pipe could hold it open after the child.
        with out.open("wb") as stdout, err.open("wb") as stderr:
            child = subprocess.Popen(
                [sys.executable, str(CLUSTER_CHILD)],
                stdout=stdout,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
        try:
            returncode = child.wait(timeout=150)
        finally:
            killed = _end_session(child, wait=15.0)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert returncode == 0, err.read_text()
    assert killed == [], f"processes outlived the child: {killed}"
    found = json.loads(out.read_text())
    nodes: dict[str, str] = found["nodes"]
    result = [(x, a, b) for x, a, b in found["result"]]
    assert [x for x, _, _ in result] == list(range(10))
    assert {a for _, a, _ in result} == {nodes["node_a"]}
    assert {b for _, _, b in result} == {nodes["node_b"]}


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


def test_ray_timed_stage_counts_from_its_actors_start(
    ray_local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporal batch groups items by when they reach a running actor: the source is read
    once the actors are up, so what it gives before a slow start does not pile up in front
    of the stage and arrive at once (one batch of 30)."""

    class SlowStart(OlympipeStage):  # local: Ray gets it by value, as test_ray is not importable
        """The backend's actor, 1.5 s to start, as a fresh Ray worker process can be on a busy
        host."""

        def __init__(self, spec: ActorSpec) -> None:
            time.sleep(1.5)
            super().__init__(spec)

    def remote_class(ray: Any) -> Any:
        return ray.remote(SlowStart)

    monkeypatch.setattr(ray_backend, "_remote_class", remote_class)
    pipeline = Pipeline(_two_bursts()).temporal_batch(0.4)
    assert pipeline.run(backend="ray") == [list(range(25)), list(range(25, 30))]


def test_ray_actors_keep_freed_blocks_for_the_next_item(ray_local: Any) -> None:
    """As process workers do (test_process_backend): in an actor's process, a 24 MB block comes
    from the heap and stays there once freed. A Ray worker starts from a fresh interpreter,
    whose glibc maps such a block apart and gives it back."""
    if not glibc_with_mallinfo2():
        pytest.skip("the tuning and its probe are glibc's")
    (mapped, kept) = (source([1]) >> stage(probe)).run(backend="ray")[0]
    assert mapped == 0, f"the actor mapped {mapped} bytes apart"
    assert kept >= SIZE, f"the actor kept {kept} bytes of free heap"
