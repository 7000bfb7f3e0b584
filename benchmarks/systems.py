"""How each system runs a workload. Each function builds the system's pipeline over ``items``
(a lazy generator) and returns its outputs, as a list or as a stream."""

from __future__ import annotations

import importlib
import itertools
import multiprocessing as mp
import os
from typing import TYPE_CHECKING, Any, Literal

from . import fns
from .workloads import ARRAY_BYTES, HINTED, SYNTHETIC, WORKLOADS, Workload, item_costs_ms

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

#: The systems that take a number of workers per stage. Each runs every workload without its
#: hints (``X``: no workers argument where the system has a default, 1 where it needs a number)
#: and, on the workloads that have hints (``workloads.HINTED``), with them (``X+hints``).
HINTABLE = ("handwritten", "olympipe", "pypeln", "mpipe", "spdl", "olympipe_typed")
HINTS = "+hints"

SYSTEMS = (
    "loop",
    "loop_split",
    "handwritten",
    "handwritten+hints",
    "pool",
    "mpire",
    "olympipe",
    "olympipe+hints",
    "pypeln",
    "pypeln+hints",
    "mpipe",
    "mpipe+hints",
    "spdl",
    "spdl+hints",
    "olympipe_typed",
    "olympipe_typed+hints",
    "olympipe_typed_journal",
    "olympipe_typed_ray",
)
# The loop over each core's share of the items, all cores at once: what this machine's cores can
# do with no communication at all, the measured ideal of the CPU-bound workloads.
SPLIT = "loop_split"
# spdl hands each item to a stage's process pool on its own (a round trip per item and stage):
# the identity and memory workloads, 200,000 and 1,000,000 ints, would outlast the timeout.
_NOT_SPDL = frozenset(WORKLOADS) - {"identity", "memory"}
#: Workloads a system runs on (every workload when not listed; ``X+hints`` also needs hints).
ONLY: dict[str, frozenset[str]] = {
    SPLIT: frozenset({"cpu", "cpu_unbalanced", *SYNTHETIC}),
    "olympipe_typed_journal": frozenset({"identity", "cpu"}),
    "spdl": _NOT_SPDL,
    "spdl+hints": _NOT_SPDL,
}
# The journal's cost: olympipe_typed with journal=, as a ratio to the same run without it.
JOURNAL = "olympipe_typed_journal"


def runs_on(system: str, workload: str) -> bool:
    """Whether ``system`` is measured on ``workload`` (see ``ONLY`` and ``HINTED``)."""
    if system.endswith(HINTS) and workload not in HINTED:
        return False
    return system not in ONLY or workload in ONLY[system]


def base_system(system: str) -> tuple[str, bool]:
    """``("X", True)`` for ``"X+hints"``, ``("X", False)`` for ``"X"``."""
    if system.endswith(HINTS):
        return system.removesuffix(HINTS), True
    return system, False


# The Ray column: olympipe_typed with backend="ray" on a local Ray (see run.py's ``child_command``).
RAY = "olympipe_typed_ray"

OtBackend = Literal["process", "thread", "inline", "ray"]
_OT_BACKENDS: tuple[OtBackend, ...] = ("process", "thread", "inline", "ray")


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def ot_backend() -> OtBackend:
    """olympipe_typed's backend for the benchmark: ``$OT_BACKEND``, "process" by default."""
    value = os.environ.get("OT_BACKEND", "process")
    for backend in _OT_BACKENDS:
        if value == backend:
            return backend
    msg = f"OT_BACKEND must be one of {', '.join(_OT_BACKENDS)} (got {value!r})"
    raise ValueError(msg)


def _queue_depth(w: Workload) -> int:
    """Items in flight per queue for systems that move items one at a time."""
    return {"arrays": 4, "images": 4, "ints": 16 if w.batch == 1 else 1000}[w.kind]


# -- the systems --


def run_loop(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """A plain for-loop in one process."""
    fs = [s.fn for s in w.stages]
    for x in items:
        for f in fs:
            x = f(x)
        yield x


def run_split(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """The plain loop in one forked process per core, all at once, each over its share of the
    items; the outputs gathered at the end. No system that moves items can beat it. Where the
    items' costs are known (the skewed workloads) the shares are balanced by cost, largest
    first to the least loaded share; otherwise each share is every ``cores()``-th item."""
    shares = cores()
    todo = list(items)
    costs = item_costs_ms(w)
    picks: list[list[int]] = [list(range(k, len(todo), shares)) for k in range(shares)]
    if costs is not None:
        loads: list[float] = [0.0] * shares
        picks = [[] for _ in range(shares)]
        for i in sorted(range(len(todo)), key=lambda i: -costs[i]):
            k = loads.index(min(loads))
            loads[k] += costs[i]
            picks[k].append(i)
        for pick in picks:
            pick.sort()
    ctx = mp.get_context("fork")
    links = [ctx.Pipe(duplex=False) for _ in range(shares)]

    def share(k: int) -> None:
        links[k][1].send(list(run_loop(w, (todo[i] for i in picks[k]))))

    procs = [ctx.Process(target=share, args=(k,), daemon=True) for k in range(shares)]
    for proc in procs:
        proc.start()
    parts: list[list[Any]] = [recv.recv() for recv, _ in links]
    for proc in procs:
        proc.join()
    out: list[Any] = [None] * len(todo)
    for pick, part in zip(picks, parts, strict=True):
        for i, value in zip(pick, part, strict=True):
            out[i] = value
    return out


def run_handwritten(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    from .handwritten import chain

    slot = ARRAY_BYTES if w.kind == "arrays" else None
    stages = [(s.fn, s.workers or 1) for s in w.stages]
    return chain(stages, items, batch_size=w.batch, shm_slot_bytes=slot)


def peer(name: str) -> Any:
    """A peer library, imported by name: the same static type whether or not it is installed
    (``make test`` type-checks this file without the peers; ``make bench`` installs them)."""
    return importlib.import_module(name)


def run_pool(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """``Pool.imap`` over all cores, the stages composed in one hop."""
    chunksize = w.batch if w.kind == "ints" else 1
    with mp.get_context("fork").Pool(cores()) as pool:
        yield from pool.imap(fns.Composed(tuple(s.fn for s in w.stages)), items, chunksize)


def run_mpire(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """mpire 2.10.2: ``WorkerPool(n_jobs=cores).imap`` over the composed stages, in order.

    The items come from a generator, so mpire is told their number (``iterable_len``) and picks
    the chunk size itself, as its users let it: n / (64 x cores) items a chunk.
    """
    mpire: Any = peer("mpire")
    with mpire.WorkerPool(n_jobs=cores(), start_method="fork") as pool:
        yield from pool.imap(fns.Composed(tuple(s.fn for s in w.stages)), items, iterable_len=w.n)


def run_spdl(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """spdl 0.8.0: ``PipelineBuilder().add_source(items).pipe(f, executor=pool, concurrency=k,
    output_order="input")...``, each stage in a ``ProcessPoolExecutor`` of its own with k workers,
    as spdl's FAQ runs a function that holds the GIL."""
    from concurrent.futures import ProcessPoolExecutor

    spdl_pipeline: Any = peer("spdl.pipeline")
    context = mp.get_context("fork")
    pools = [ProcessPoolExecutor(s.workers or 1, mp_context=context) for s in w.stages]
    try:
        # Each pool forks its workers at its first task: here, before spdl's event-loop
        # thread starts, rather than from inside it.
        for pool in pools:
            pool.submit(int).result()
        builder: Any = spdl_pipeline.PipelineBuilder().add_source(items)
        for s, pool in zip(w.stages, pools, strict=True):
            builder = builder.pipe(
                s.fn, executor=pool, concurrency=s.workers or 1, output_order="input"
            )
        pipeline: Any = builder.add_sink(_queue_depth(w)).build(num_threads=1)
        with pipeline.auto_stop():
            yield from pipeline
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)


def run_olympipe(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """olympipe 2.2.0: ``Pipeline(data).task(f, count=k)...wait_for_result()``."""
    p: Any = peer("olympipe").Pipeline(items)
    for s in w.stages:
        p = p.task(s.fn, count=s.workers or 1)
    out: list[Any] = p.wait_for_result()
    return out


def count_olympipe(w: Workload, items: Iterator[Any]) -> tuple[int, int]:
    """olympipe has no stream: its way to consume without collecting is a reduce stage."""
    p: Any = peer("olympipe").Pipeline(items)
    for s in w.stages:
        p = p.task(s.fn, count=s.workers or 1)
    res: tuple[int, int] = p.wait_and_reduce((0, -1), fns.count_in_order)
    return res


def run_pypeln(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """pypeln 0.4.9: chained ``pl.process.map`` with ``workers`` and ``maxsize``."""
    process: Any = peer("pypeln").process
    stage: Any = items
    for s in w.stages:
        stage = process.map(s.fn, stage, workers=s.workers or 1, maxsize=_queue_depth(w))
    out: Iterable[Any] = stage
    return out


def run_mpipe(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """mpipe 1.0.8: a chain of ``OrderedStage``; the caller keeps a bounded window in flight
    (its pipes block, so putting everything before getting would deadlock)."""
    mpipe = peer("mpipe")
    stages: list[Any] = [mpipe.OrderedStage(s.fn, s.workers or 1) for s in w.stages]
    for a, b in itertools.pairwise(stages):
        a.link(b)
    pipe: Any = mpipe.Pipeline(stages[0])
    window = len(w.stages) if w.kind != "ints" else _queue_depth(w)
    in_flight = 0
    for x in items:
        pipe.put(x)
        in_flight += 1
        if in_flight >= window:
            yield pipe.get()
            in_flight -= 1
    pipe.put(None)
    for _ in range(in_flight):
        yield pipe.get()
    pipe.get()  # the stop signal


def run_olympipe_typed(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """olympipe_typed: ``(source(data) >> stage(f) >> ...).run()``, ``.stream()`` when streaming."""
    return _olympipe_typed(w, items, ot_backend())


def run_olympipe_typed_ray(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """olympipe_typed on Ray: the same pipeline, ``backend="ray"``."""
    return _olympipe_typed(w, items, "ray")


def run_olympipe_typed_journal(w: Workload, items: Iterator[Any]) -> Iterable[Any]:
    """olympipe_typed with ``journal=`` (a new journal in a temporary directory)."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        return list(
            _olympipe_typed(w, items, ot_backend(), journal=os.path.join(directory, "j.db"))
        )


def _olympipe_typed(
    w: Workload, items: Iterator[Any], backend: OtBackend, journal: str | None = None
) -> Iterable[Any]:
    from olympipe_typed import Pipeline, source, stage

    p: Pipeline[Any] = source(items)
    for s in w.stages:
        st = stage(s.fn)
        if s.workers is not None:  # no hint: no options() call, the planner decides
            st = st.options(workers=s.workers)
        p = p >> st
    if w.stream:
        return p.stream(backend=backend, journal=journal)
    return p.run(backend=backend, journal=journal)


RUNNERS: dict[str, Callable[[Workload, Iterator[Any]], Iterable[Any]]] = {
    "loop": run_loop,
    SPLIT: run_split,
    "handwritten": run_handwritten,
    "pool": run_pool,
    "mpire": run_mpire,
    "spdl": run_spdl,
    "olympipe": run_olympipe,
    "pypeln": run_pypeln,
    "mpipe": run_mpipe,
    "olympipe_typed": run_olympipe_typed,
    JOURNAL: run_olympipe_typed_journal,
    RAY: run_olympipe_typed_ray,
}

#: Modules each system imports, loaded before the clock starts and before the base RSS is read.
IMPORTS: dict[str, tuple[str, ...]] = {
    "loop": (),
    SPLIT: (),
    "handwritten": ("benchmarks.handwritten",),
    "pool": ("multiprocessing.pool",),
    "mpire": ("mpire",),
    "spdl": ("spdl.pipeline", "concurrent.futures.process"),
    "olympipe": ("olympipe",),
    "pypeln": ("pypeln",),
    "mpipe": ("mpipe",),
    # The process backend is imported at a pipeline's first run, not at `import olympipe_typed`;
    # the hand-written chain's module imports multiprocessing when imported. Both before the
    # clock: the start-up workload is where import costs are measured.
    "olympipe_typed": ("olympipe_typed", "olympipe_typed.backends.process"),
    JOURNAL: ("olympipe_typed", "olympipe_typed.backends.process", "olympipe_typed._journal"),
    RAY: ("olympipe_typed", "ray"),
}


def describe(system: str) -> str:
    """How ``system`` is used here (``NOTES``), for ``X+hints`` too."""
    base, hinted = base_system(system)
    if not hinted:
        return NOTES[system]
    return f"{base} given the stages' hints (workers per stage), on the workloads that have them"


#: How each system is used here, printed under the tables.
NOTES: dict[str, str] = {
    "loop": "a plain for-loop in one process (no parallelism)",
    SPLIT: "the plain loop in one forked process per core, each over every n-th item (n cores; "
    "on the skewed workloads, shares balanced by each item's known cost), all at once, outputs gathered at the end: the CPU-bound workloads' measured ideal (cpu workloads only)",
    "handwritten": "one forked process per stage worker, one-producer/one-consumer Pipes, "
    "batches of 1000 ints, shared-memory slots for arrays; round-robin keeps order",
    "pool": "multiprocessing.Pool.imap on all cores, chunksize 1000 for ints; the stages are "
    "composed into one hop (Pool cannot chain stages), no backpressure",
    "mpire": "mpire==2.10.2, WorkerPool(n_jobs=cores, fork).imap over the composed stages "
    "(one hop, like pool), iterable_len=n so that mpire picks the chunk size (n / (64 x cores))",
    "spdl": "spdl==0.8.0, PipelineBuilder().add_source(data).pipe(f, executor=ProcessPoolExecutor(k), "
    "concurrency=k, output_order='input')... one process pool per stage, as its FAQ runs "
    "GIL-holding functions; not on identity and memory (one pool round trip per item and stage)",
    "olympipe": "olympipe==2.2.0, Pipeline(data).task(f, count=k)...wait_for_result(); "
    "memory workload: wait_and_reduce (a reduce stage; it has no streaming API)",
    "pypeln": "pypeln==0.4.9, pl.process.map(f, stage, workers=k, maxsize=16/1000/4)",
    "mpipe": "mpipe==1.0.8, OrderedStage chain, put/get with a bounded window in flight",
    "olympipe_typed": "this library: source(data) >> stage(f) ..., .run() "
    "(.stream() for arrays and memory), no .options(workers=...): its planner decides",
    JOURNAL: "this library with journal= (a new SQLite journal per run; identity and cpu "
    "workloads only): the cost of a resumable run",
    RAY: "this library with backend='ray': each stage worker a Ray actor, on a local Ray "
    "(all cores, no dashboard) started before the clock, as a running cluster would be; the "
    "actors start inside the clock; start-up: a script that starts Ray itself",
}
