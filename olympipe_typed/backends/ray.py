"""The Ray backend: every stage worker a Ray actor; the caller only orchestrates object refs.

    source --(reader thread)--> caller --seq 0--> [A w0] --ref--> [B w0] --ref--> caller
                                       --seq 1--> [A w1] --ref--> [B w0] --ref--> (in seq order)

The caller cuts each source into numbered messages, as the process backend does. For
message ``seq`` it submits one call per node, to worker ``seq % k`` of a node with
``k`` workers, passing the parents' result refs as the arguments: Ray moves the data
from actor to actor through its object store, and runs each actor's calls in the order
the caller submitted them (one submitter, no task retries), which keeps stateful stages
(batch, reduce, limit) in order. Every call returns exactly one message, so the caller
reads each output's messages in seq order by waiting on its refs in turn: order is kept
without reorder buffers, and a fan-out is one ref passed to several children (broadcast).

Fan-in (``|`` fan-out merged, gather): the merging actor receives message ``seq`` of
every parent and sorts their items by key, exactly as the process backend does (keys
``(source position, source rank)``, ``+ (j,)`` for the j-th output of a flat or
batching stage, ``+ (rank,)`` entering the rank-th child of a node with several
children). Several sources advance in lockstep, the same number of items each per
message, so that keys of one message compare across sources as inline reads them.

End of stream: a last message, ``finish``, makes every node flush (a partial batch, a
reduction) after its parents' last words; then ``close`` runs once on every actor
(class stages' close()). While the source is idle, empty messages let time-based stages
(timeouts, temporal batches) poll. Each message also carries what each node it went
through costs per source item, in seconds and bytes, and which nodes want no more input
(a limit reached, a timeout): the caller sizes later messages by the first ones, and
stops reading a source that nothing downstream wants.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import sys
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .._errors import PipelineError, SourceError, StageError, WorkerDied
from .._hints import short_repr
from .._malloc import keep_freed_memory
from .._ops import ONE_TO_ONE, count_items, log_skipped, number_outputs
from .._report import WorkerStats

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from .._failures import Failure
    from .._graph import Graph, Node
    from .._ops import Emit, Processor
    from .._report import Recorder

Key = tuple[float, ...]
INF: Final = float("inf")
_MAX_ITEMS: Final = 4096  # items per message, at most (a call costs ~1 ms: tiny items need many)
_MESSAGE_WORK: Final = 0.02  # seconds of the slowest stage's work per message: ~1 ms per call
_MESSAGE_BYTES: Final = 4 * 2**20  # bytes per message, at most (4 MB arrays go one by one)
_AHEAD: Final = 2 * _MAX_ITEMS  # items a reader takes from its source ahead of the caller
_AHEAD_BYTES: Final = 16 * 2**20  # ... and bytes
_IN_FLIGHT: Final = 8  # messages submitted but not yet read back, at least
_FLUSH: Final = 0.002  # how long a message waits to fill from a slow source
_IDLE: Final = 0.005  # how long the caller waits for source items before checking outputs
_WAIT: Final = 0.1  # how long one wait for outputs lasts (Ctrl-C is seen between waits)
_INSTALL: Final = "backend='ray' needs Ray: pip install 'olympipe_typed[ray]'"


class Message(NamedTuple):
    """What one call of one actor returns, for one ``seq``."""

    items: list[Any]
    keys: list[Key] | None  # in graphs that merge flows only
    costs: dict[int, tuple[float, float]]  # node id -> (seconds, bytes) per source item
    exhausted: frozenset[int]  # nodes that want no more input
    # Items that failed under on_error="collect" on the way: node id -> (worker, items the
    # worker had taken, failures); merged like costs, so a fan-out's outputs repeat them.
    failures: Mapping[int, tuple[int, int, list[Failure[Any]]]] = {}


class ActorSpec(NamedTuple):
    """What an actor needs to build its node's processor."""

    op: bytes  # the Op, cloudpickled: lambdas, closures and __main__ travel by value
    name: str
    node_id: int
    worker: int
    check_types: bool
    keyed: bool
    ranks: tuple[int | None, ...]  # per input: our rank among that parent's children
    paths: tuple[str, ...]  # the caller's sys.path: its modules import here too
    workers: int = 1  # the node's actors (each starts its share of the stage's rate)
    caller: int = 0  # the caller's process id: an actor in it leaves its malloc alone


class _Failure(Exception):
    """A stage's failure on its way from an actor to the caller.

    Ray pickles exceptions, which drops ``__cause__``: this one carries the error, its
    original cause and the worker's traceback text as its arguments instead.
    """

    def __init__(self, error: PipelineError, original: BaseException | None, tb: str) -> None:
        super().__init__(error, original, tb)
        self.error = error
        self.original = original
        self.tb = tb


def _failure(name: str, exc: BaseException) -> _Failure:
    """``exc`` packed for the trip to the caller, with what survives pickling."""
    if isinstance(exc, PipelineError):  # StageError, StageTypeError: re-raised as they are
        error, original = exc, exc.__cause__
    else:  # not from the stage's function: an on_error handler raising, say
        error, original = StageError(name, "<unknown>", f"{type(exc).__name__}: {exc}"), exc
    tb = "".join(traceback.format_exception(original)) if original is not None else ""
    if not _picklable(original):  # its text, then, in the traceback
        tb = f"{type(original).__name__}: {original}\n{tb}"
        original = None
    return _Failure(error, original, tb)


def _picklable(obj: object) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(obj)
    except Exception:
        return False
    return True


def _sizeof(item: object) -> int:
    """Bytes ``item`` takes pickled; large buffers (arrays) are counted, not copied."""
    size = 0

    def count(buffer: pickle.PickleBuffer) -> None:
        nonlocal size
        size += buffer.raw().nbytes

    try:
        size += len(pickle.dumps(item, protocol=5, buffer_callback=count))
    except Exception:
        return 0  # only cloudpickle can: a rare kind of item, assume it is small
    return size


# --- inside the actor ---


class OlympipeStage:
    """One worker of one node, as a Ray actor: a Processor fed one message per call.

    Ray shows this class's name in ``ray list actors`` and its repr in errors.
    """

    def __init__(self, spec: ActorSpec) -> None:
        for path in spec.paths:  # as spawn does: the caller's modules, where they exist
            if path not in sys.path and os.path.isdir(path):
                sys.path.append(path)
        if os.getpid() != spec.caller:
            keep_freed_memory()
        self.spec = spec
        self.stats = WorkerStats(time.perf_counter(), spec.worker)  # for the run report
        self.proc: Processor | None = None
        self.failure: _Failure | None = None
        self.last_key: Key = (0,)
        try:
            # item_timeout and max_items_per_worker: a child process of the actor, forked.
            op = pickle.loads(spec.op)
            self.proc = op.open(
                spec.name, check_types=spec.check_types, processes=True, workers=spec.workers
            )
        except StageError as exc:  # a class stage's constructor raised
            self.failure = _failure(spec.name, exc)
        except Exception as exc:  # the stage's code cannot be imported on this node
            msg = f"cannot load the stage on its Ray worker: {type(exc).__name__}: {exc}"
            err = StageError(spec.name, "<none: loading the stage>", msg)
            err.__cause__ = exc
            self.failure = _failure(spec.name, err)

    def __repr__(self) -> str:
        return f"OlympipeStage({self.spec.name!r}, worker={self.spec.worker})"

    def pid(self) -> int:
        """This actor's process id, for ``WorkerDied`` should it die."""
        return os.getpid()

    def process(self, n_source: int, *inputs: Message) -> Message:
        """Message ``seq``: the parents' messages in, ours out."""
        return self._run(n_source, inputs, final=False)

    def finish(self, n_source: int, *inputs: Message) -> Message:
        """The last message: the parents' last words, then what this node still holds."""
        return self._run(n_source, inputs, final=True)

    def close(self) -> tuple[int, WorkerStats]:
        """Once per actor at the end: a class stage's close(); returns the skipped count and
        the actor's numbers for the run report."""
        self.stats.ended = time.perf_counter()
        proc, self.proc = self.proc, None
        if proc is None:
            return 0, self.stats
        try:
            proc.close()
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            err = StageError(self.spec.name, "<none: in close()>", msg)
            err.__cause__ = exc
            raise _failure(self.spec.name, err) from None
        return proc.skipped, self.stats

    def _run(self, n_source: int, inputs: Sequence[Message], *, final: bool) -> Message:
        if self.failure is not None:
            raise self.failure
        proc = self.proc
        assert proc is not None
        started, cpu = time.perf_counter(), time.thread_time()
        out: list[Any] = []
        keys: list[Key] | None = [] if self.spec.keyed else None
        try:
            if proc.op.seconds is not None:  # a timeout or a timed batch: is its time up?
                proc.poll(time.monotonic(), self._emitter(out, keys, (*self.last_key, INF)))
            if not proc.exhausted:
                self._process(proc, inputs, out, keys)
            if final:
                proc.flush(self._emitter(out, keys, (INF, self.spec.node_id)))
        except Exception as exc:
            raise _failure(self.spec.name, exc) from None
        ended = time.perf_counter()
        stats = self.stats
        if not stats.busy:  # the clock starts with the first message, not the actor's start
            stats.started = started
        stats.busy += ended - started
        stats.cpu += time.thread_time() - cpu
        stats.timeline.add(started, ended)
        enveloped = proc.op.enveloped  # a journaled run: the report counts inner items
        stats.items_in += sum(count_items(msg.items, enveloped) for msg in inputs)
        stats.items_out += count_items(out, enveloped)
        return self._message(proc, inputs, out, keys, n_source, ended - started)

    def _process(
        self, proc: Processor, inputs: Sequence[Message], out: list[Any], keys: list[Key] | None
    ) -> None:
        if keys is None:  # no merge in the graph: one input, the workers' fast loop
            for msg in inputs:
                proc.process_many(msg.items, out)
            return
        pairs = [
            (key if rank is None else (*key, rank), item)
            for msg, rank in zip(inputs, self.spec.ranks, strict=True)
            for key, item in zip(msg.keys or (), msg.items, strict=True)
        ]
        if len(inputs) > 1:  # a fan-in: restore the inline order
            pairs.sort(key=lambda pair: pair[0])
        each = getattr(proc, "each", None)
        if each is not None and pairs:  # an I/O stage: the items in flight together
            number_outputs(pairs, each([x for _, x in pairs]), proc.op.kind, out, keys)
            self.last_key = pairs[-1][0]
            return
        for key, item in pairs:
            self.last_key = key
            start = len(out)
            proc.process(item, out.append)
            n = len(out) - start
            if n == 1 and proc.op.kind in ONE_TO_ONE:
                keys.append(key)
            else:
                keys += [(*key, j) for j in range(n)]
            if proc.exhausted:
                return

    @staticmethod
    def _emitter(out: list[Any], keys: list[Key] | None, key: Key) -> Emit:
        """Where a flush or a poll puts its outputs: after everything, or after the last item."""

        def emit(value: object) -> None:
            out.append(value)
            if keys is not None:
                keys.append(key)

        return emit

    def _message(
        self,
        proc: Processor,
        inputs: Sequence[Message],
        out: list[Any],
        keys: list[Key] | None,
        n_source: int,
        busy: float,
    ) -> Message:
        costs: dict[int, tuple[float, float]] = {}
        exhausted: set[int] = set()
        failures: dict[int, tuple[int, int, list[Failure[Any]]]] = {}
        for msg in inputs:
            costs.update(msg.costs)
            exhausted |= msg.exhausted
            failures.update(msg.failures)
        if proc.failures:
            failures[self.spec.node_id] = (self.spec.worker, self.stats.items_in, proc.failures)
            proc.failures = []
        if n_source:  # what this node costs per source item: the caller sizes messages by it
            nbytes = _sizeof(out[0]) * len(out) if out else 0
            costs[self.spec.node_id] = (busy / n_source, nbytes / n_source)
        if proc.exhausted:
            exhausted.add(self.spec.node_id)
        return Message(out, keys, costs, frozenset(exhausted), failures)


# --- the caller's side ---


def _import_ray() -> Any:
    """Ray, imported only when a run asks for it: ``import olympipe_typed`` never does."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ImportError(_INSTALL, name="ray") from exc


def _connect(ray: Any) -> None:
    """Join the cluster the caller's ``ray.init(address=...)`` connected to; else start a
    local Ray (``ray.init()``: ``RAY_ADDRESS`` is honoured) and leave it running for the
    next runs, as Ray's own libraries do; it stops with the interpreter or ``ray.shutdown()``."""
    if not ray.is_initialized():
        ray.init()


# Options.resources keys that are Ray actor options of their own, and their Ray resource names.
_OWN: Final = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def _actor_options(resources: Mapping[str, float] | None) -> dict[str, Any]:
    """``Options.resources`` as Ray's actor options: num_cpus, num_gpus and memory by name,
    any other key a custom resource.

    Without resources, Ray's actor default applies: placing the actor needs 1 free CPU,
    running it holds none, so every stage of a pipeline fits on a 2-core machine. With
    some, num_cpus is 0 unless given (Ray would hold 1 CPU for the actor's lifetime as
    soon as any resource is named, and a stage pinned to a node by a custom resource
    would then take a CPU there it never asked for).
    """
    if not resources:
        return {}
    options: dict[str, Any] = {"num_cpus": 0}
    custom = {k: v for k, v in resources.items() if k not in _OWN}
    options.update({k: v for k, v in resources.items() if k in _OWN})
    if custom:
        options["resources"] = custom
    return options


def _demand(resources: Mapping[str, float] | None) -> dict[str, float]:
    """What one actor holds while it lives, in Ray's resource names."""
    return {_OWN.get(k, k): v for k, v in (resources or {}).items() if v > 0}


def _check_fits(ray: Any, graph: Graph) -> None:
    """Refuse a run whose actors could never all be placed: Ray would wait for them forever.

    Each worker must fit on one node, and all of them together in the cluster (the
    pipeline needs every worker alive). Checked against the cluster's nodes now: on an
    autoscaling cluster, request the nodes first (``ray.autoscaler.sdk.request_resources``).
    """
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    totals: dict[str, float] = ray.cluster_resources()
    held: dict[str, float] = {}
    for node in graph.nodes:
        if node.op is None:
            continue
        resources = node.op.options.resources
        # Ray's default actor holds nothing, but is placed only where a CPU is free.
        place = _demand(resources) if resources else {"CPU": 1.0}
        if not any(all(n.get(k, 0.0) >= v for k, v in place.items()) for n in nodes):
            most = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in place}
            msg = (
                f"no node of the Ray cluster has {place} for one worker (the most one has: {most})"
            )
            raise StageError(node.name, "<none: placing its Ray actors>", msg)
        for key, amount in _demand(resources).items():
            held[key] = held.get(key, 0.0) + amount * _worker_count(node)
        over = {k: v for k, v in held.items() if v > totals.get(k, 0.0)}
        if over:
            msg = (
                f"its workers and those of the stages before it hold {over}, more than "
                f"the Ray cluster has ({totals}): some would never start"
            )
            raise StageError(node.name, "<none: placing its Ray actors>", msg)


def _ship(ray: Any, node: Node) -> bytes:
    """The node's Op for its actors, pickled by Ray's own cloudpickle: the same rules as
    for items (by value for ``__main__``, lambdas and closures, and for modules registered
    with ``ray.cloudpickle.register_pickle_by_value``), and classes shipped by value keep
    their identity when their instances come back. A stage that cannot be fails here."""
    try:
        return bytes(ray.cloudpickle.dumps(node.op, protocol=5))
    except Exception as exc:
        msg = f"cannot pickle stage {node.name!r} to send it to its Ray actors: {type(exc).__name__}: {exc}"
        raise StageError(node.name, "<none: shipping the stage>", msg) from exc


def _worker_count(node: Node) -> int:
    """Stateful kinds and merges see every item in order: one worker."""
    assert node.op is not None
    if node.op.stateful or len(node.parents) > 1:
        return 1
    return node.op.options.workers or 1  # no planner here: Ray places the actors


def _ranks(graph: Graph, node: Node) -> tuple[int | None, ...]:
    """For each of ``node``'s inputs, its rank among that parent's children (keys carry it)."""
    ranks: list[int | None] = []
    seen: dict[int, int] = {}
    for parent in node.parents:
        children = graph.nodes[parent].children
        nth = seen.get(parent, 0)
        seen[parent] = nth + 1
        places = [i for i, c in enumerate(children) if c == node.id]
        ranks.append(places[nth] if len(children) > 1 else None)
    return tuple(ranks)


@functools.cache
def _remote_class(ray: Any) -> Any:
    """The actor class, declared to Ray once per process (Ray exports it once per cluster)."""
    return ray.remote(OlympipeStage)


class _Reader:
    """Reads one source in a thread, so that a stalled source never blocks the caller.

    At most ``ahead`` items wait in ``items``: backpressure reaches the source.
    """

    def __init__(self, node: Node, rank: int, cond: threading.Condition) -> None:
        self.node, self.rank, self.cond = node, rank, cond
        self.items: deque[Any] = deque()
        self.done = False
        self.error: SourceError | None = None
        self.taken = 0  # items handed to messages so far: the next key's position
        self.item_bytes = 0  # pickled size of an item, as the last message's first one measured
        self.ahead = _AHEAD
        self.stop = False
        self.thread = threading.Thread(
            target=self._pull, name=f"olympipe-source-{node.name}", daemon=True
        )

    def _pull(self) -> None:
        items, cond = self.items, self.cond
        assert self.node.source is not None
        try:
            for item in self.node.source.open():
                items.append(item)
                n = len(items)
                if n == 1 or n == _MAX_ITEMS:  # wake the caller: first item, or a full message
                    with cond:
                        cond.notify_all()
                if n >= self.ahead:  # an attribute, not a call: this runs once per item
                    with cond:
                        while len(items) >= self.ahead and not self.stop:
                            cond.wait(_WAIT)
                if self.stop:
                    break
        except BaseException as exc:
            msg = f"source {self.node.name!r} raised {type(exc).__name__}: {exc}"
            self.error = SourceError(msg)
            self.error.__cause__ = exc
        finally:
            with cond:
                self.done = True
                cond.notify_all()

    def take(self, n: int) -> list[Any]:
        popleft = self.items.popleft
        batch = [popleft() for _ in range(min(n, len(self.items)))]
        self.taken += len(batch)
        if batch:
            self.item_bytes = _sizeof(batch[0])
            self.ahead = max(2, min(_AHEAD, _AHEAD_BYTES // max(self.item_bytes, 1)))
        return batch


class _Run:
    """One run: actors, readers, the messages in flight; yields outputs, tears down."""

    def __init__(
        self, ray: Any, graph: Graph, *, check_types: bool, recorder: Recorder | None = None
    ) -> None:
        self.recorder = recorder
        self.ray, self.graph, self.check_types = ray, graph, check_types
        self.keyed = any(len(n.parents) > 1 for n in graph.nodes)
        self.actors: dict[int, list[Any]] = {}
        self.stages: dict[str, tuple[str, Any]] = {}  # actor id -> (stage, its pid() ref)
        self.cond = threading.Condition()
        self.readers = [_Reader(n, r, self.cond) for r, n in enumerate(graph.sources)]
        self.reader_of = {r.node.id: r for r in self.readers}
        self.pending: deque[list[Any]] = deque()  # per seq: each output's message or ref
        self.seq = 0
        self.finished = False
        self.costs: dict[int, tuple[float, float]] = {}
        self.exhausted: set[int] = set()
        self.ops = sum(1 for n in graph.nodes if n.op is not None)
        # Items a message at least: an I/O stage's actor keeps one message's items in flight.
        self.least = max((n.op.concurrency for n in graph.nodes if n.op is not None), default=1)
        seconds = [n.op.seconds for n in graph.nodes if n.op is not None and n.op.seconds]
        # Empty messages while the source is idle let timed stages poll, a few per period.
        self.tick = min(0.1, max(0.01, min(seconds) / 4)) if seconds else None
        self.last_sent = time.monotonic()
        widest = max((_worker_count(n) for n in graph.nodes if n.op is not None), default=1)
        self.in_flight = max(_IN_FLIGHT, 2 * widest + self.ops)

    def start(self) -> None:
        remote = _remote_class(self.ray)
        paths = tuple(p for p in sys.path if os.path.isabs(p))
        for node in self.graph.nodes:
            if node.op is None:
                continue
            op = _ship(self.ray, node)
            options = _actor_options(node.op.options.resources)
            ranks = _ranks(self.graph, node)
            handles: list[Any] = []
            count = _worker_count(node)
            for w in range(count):
                spec = ActorSpec(
                    op,
                    node.name,
                    node.id,
                    w,
                    self.check_types,
                    self.keyed,
                    ranks,
                    paths,
                    count,
                    os.getpid(),
                )
                actor = remote.options(**options).remote(spec)
                self.stages[actor._actor_id.hex()] = (node.name, actor.pid.remote())
                handles.append(actor)
            self.actors[node.id] = handles
        if self.tick is not None:
            # A timed stage groups items by when they reach it: read the sources once every
            # actor is up, or what Ray queued while it started a worker (a second or more on
            # a busy host) would reach the stage at once.
            waiting = [ref for _, ref in self.stages.values()]
            while waiting:
                waiting = self.ray.wait(waiting, num_returns=len(waiting), timeout=_WAIT)[1]
        for reader in self.readers:
            reader.thread.start()

    # -- sending messages --

    def _submit(self, batches: dict[int, list[Any]], *, final: bool = False) -> None:
        """Message ``seq``: one call per node, each given its parents' results."""
        seq, n_source = self.seq, sum(len(b) for b in batches.values())
        self.seq += 1
        results: dict[int, Any] = {}
        for node in self.graph.nodes:
            if node.op is None:
                results[node.id] = self._source_message(node, batches.get(node.id, []))
                continue
            workers = self.actors[node.id]
            actor = workers[seq % len(workers)]
            call = actor.finish if final else actor.process
            results[node.id] = call.remote(n_source, *(results[p] for p in node.parents))
        self.pending.append([results[n] for n in self.graph.outputs])
        self.last_sent = time.monotonic()

    def _source_message(self, node: Node, items: list[Any]) -> Any:
        """A source's slice as a message, put in the object store once for several children."""
        reader = self.reader_of[node.id]
        keys: list[Key] | None = None
        if self.keyed:
            start = reader.taken - len(items)
            keys = [(start + j, reader.rank) for j in range(len(items))]
        msg = Message(items, keys, {}, frozenset())
        return msg if len(node.children) < 2 else self.ray.put(msg)

    def _unpicklable(self, batches: dict[int, list[Any]]) -> StageError:
        """A StageError naming the first source item pickle refuses and the stage reading it."""
        import cloudpickle

        for node_id, items in batches.items():
            children = self.graph.nodes[node_id].children
            if not children:  # an output itself: its items never leave the caller
                continue
            receiver = self.graph.nodes[children[0]].name
            for item in items:
                try:
                    cloudpickle.dumps(item)
                except Exception as exc:  # this is the item we are looking for
                    msg = f"cannot pickle this item to send it to stage {receiver!r}: {type(exc).__name__}: {exc}"
                    return StageError(receiver, short_repr(item), msg)
        return StageError("<unknown>", "<unknown>", "cannot pickle a message to send it on")

    def _feed(self) -> None:
        """Send the next message if the sources have one ready (waiting ``_IDLE`` at most)."""
        live = self._live()
        if not live:
            self._submit({}, final=True)
            self.finished = True
            return
        size = self._size()
        with self.cond:
            if not self._ready(live, size):
                self.cond.wait(_IDLE)
            if not self._ready(live, size):
                if self.tick is not None and time.monotonic() - self.last_sent >= self.tick:
                    self._submit({})  # idle: let timed stages poll
                return
            if len(self.readers) == 1 and len(live[0].items) < size and not live[0].done:
                self.cond.wait(_FLUSH)  # one source: a moment to fill the message, no more
            batches = {r.node.id: r.take(size) for r in live}
            self.cond.notify_all()  # room again for the readers
        try:
            self._submit(batches)
        except (TypeError, pickle.PicklingError) as exc:
            raise self._unpicklable(batches) from exc

    def _ready(self, live: list[_Reader], size: int) -> bool:
        """One source: any item. Several: each has a full message or is at its end (lockstep)."""
        if len(self.readers) == 1:
            return bool(live[0].items)
        return all(len(r.items) >= size or r.done for r in live)

    def _live(self) -> list[_Reader]:
        """The sources still to read; raises a source's error once its items are sent."""
        live: list[_Reader] = []
        for reader in self.readers:
            if reader.stop:
                continue
            if reader.done and not reader.items:
                if reader.error is not None:
                    raise reader.error
                continue
            live.append(reader)
        return live

    def _size(self) -> int:
        """Items per message: ``_MESSAGE_WORK`` of the slowest stage's work, ``_MESSAGE_BYTES``
        of data at most. One item until every stage has said what an item costs it, so that
        a slow stage's workers share the first items too."""
        if len(self.costs) < self.ops:
            return self.least
        seconds = max((s for s, _ in self.costs.values()), default=0.0)
        nbytes = max([*(r.item_bytes for r in self.readers), *(b for _, b in self.costs.values())])
        by_work = _MESSAGE_WORK / max(seconds, 1e-9)
        by_bytes = _MESSAGE_BYTES / max(nbytes, 1)
        return int(max(1, min(_MAX_ITEMS, by_work, by_bytes), min(self.least, by_bytes)))

    # -- reading outputs --

    def results(self) -> Iterator[tuple[int, list[Any]]]:
        """Yield (output index, items) in seq order, sending messages while there is room."""
        while True:
            yield from self._drain(block=False)
            if self.finished or len(self.pending) >= self.in_flight:
                if not self.pending:
                    return
                yield from self._drain(block=True)
            else:
                self._feed()

    def _drain(self, *, block: bool) -> Iterator[tuple[int, list[Any]]]:
        """Yield the oldest messages whose outputs are all in; with ``block``, wait for one."""
        while self.pending:
            entry = self.pending[0]
            refs = list({id(r): r for r in entry if isinstance(r, self.ray.ObjectRef)}.values())
            if refs:
                timeout = _WAIT if block else 0
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
                if len(ready) < len(refs):
                    if block:
                        continue
                    return
            self.pending.popleft()
            msgs = self._get(entry)
            self._failures(msgs)
            for index, msg in enumerate(msgs):
                self._learn(msg)
                if msg.items:
                    yield index, msg.items
            if block:
                return

    def _get(self, entry: list[Any]) -> list[Message]:
        ray = self.ray
        try:
            return [ray.get(r) if isinstance(r, ray.ObjectRef) else r for r in entry]
        except ray.exceptions.RayError as exc:
            error, cause = self._translate(exc)
        raise error from cause

    def _failures(self, msgs: list[Message]) -> None:
        """Hand the failures the messages of one seq carry to the report, each once."""
        seen: dict[int, tuple[int, int, list[Failure[Any]]]] = {}
        for msg in msgs:
            seen.update(msg.failures)
        if self.recorder is not None:
            for node_id, (worker, entered, failures) in seen.items():
                self.recorder.fail(self.graph.nodes[node_id].name, worker, failures, entered)

    def _learn(self, msg: Message) -> None:
        self.costs.update(msg.costs)
        if not msg.exhausted <= self.exhausted:
            self.exhausted |= msg.exhausted
            self._stop_dead_sources()

    def _stop_dead_sources(self) -> None:
        """Stop reading each source that no output wants any more (limit reached, timeout)."""
        nodes, sinks = self.graph.nodes, set(self.graph.outputs)

        def alive(node_id: int) -> bool:
            if node_id in self.exhausted:
                return False
            return node_id in sinks or any(alive(c) for c in nodes[node_id].children)

        for reader in self.readers:
            if not alive(reader.node.id):
                reader.stop = True
        with self.cond:
            self.cond.notify_all()

    # -- errors --

    def _translate(self, exc: BaseException) -> tuple[PipelineError, BaseException | None]:
        """Ray's error as ours: (error to raise, its cause)."""
        ray = self.ray
        task_error: Any = exc  # a RayTaskError's cause is what the actor's method raised
        cause: BaseException = (
            task_error.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
        )
        if isinstance(cause, _Failure):
            return self._rebuild(cause)
        if isinstance(cause, ray.exceptions.RayActorError):
            return self._died(cause), None
        # Ray itself failed around a stage: mostly an output that cannot be pickled.
        stage = self._origin(str(exc))
        msg = f"Ray could not pass this stage's outputs on: {type(cause).__name__}: {cause}"
        return StageError(stage, "<unknown>", msg), cause

    @staticmethod
    def _rebuild(failure: _Failure) -> tuple[PipelineError, BaseException | None]:
        """The actor's error, with the worker's traceback in a StageError's message."""
        error = failure.error
        if isinstance(error, StageError):
            error = StageError(error.stage, error.item_repr, error.message, failure.tb)
        return error, failure.original

    def _died(self, cause: Any) -> PipelineError:
        stage, pid_ref = self.stages.get(cause.actor_id or "", ("<unknown>", None))
        if getattr(cause, "actor_init_failed", False):
            msg = f"its Ray actor could not start: {cause.error_msg}"
            return StageError(stage, "<none: starting the actor>", msg)
        pid = None
        if pid_ref is not None and self.ray.wait([pid_ref], timeout=0)[0]:
            with contextlib.suppress(Exception):
                pid = int(self.ray.get(pid_ref))
        hint = "its Ray actor died; Ray reports no exit code or signal (see the raylet's logs)"
        return WorkerDied(stage, pid, None, hint)

    def _origin(self, text: str) -> str:
        """The stage whose actor a Ray error text names last: where the failure began."""
        found = [(text.rfind(f"actor_id={a}"), s) for a, (s, _) in self.stages.items()]
        place, stage = max(found, default=(-1, "<unknown>"))
        return stage if place >= 0 else "<unknown>"

    # -- the end --

    def finish(self) -> None:
        """After the last output: close() on every actor, then report skips and failures."""
        ray = self.ray
        closes = [(n, a.close.remote()) for n, actors in self.actors.items() for a in actors]
        first: tuple[PipelineError, BaseException | None] | None = None
        for node_id, ref in closes:
            name = self.graph.nodes[node_id].name
            try:
                skipped, stats = ray.get(ref)
            except ray.exceptions.RayError as exc:
                first = first or self._translate(exc)
                continue
            if self.recorder is not None:
                self.recorder.stats(name, stats)
                if skipped:
                    self.recorder.skip(name, skipped)
            if skipped:
                log_skipped(name, skipped)
        if first is not None:
            raise first[0] from first[1]

    def close(self) -> None:
        """Kill every actor and stop the readers: after a run, a failure, a break or Ctrl-C."""
        for reader in self.readers:
            reader.stop = True
        with self.cond:
            self.cond.notify_all()
        for actors in self.actors.values():
            for actor in actors:
                with contextlib.suppress(Exception):
                    self.ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.pending.clear()


def execute(
    graph: Graph, *, check_types: bool = False, recorder: Recorder | None = None
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``graph`` with one Ray actor per stage worker; yield (output index, items)."""
    ray = _import_ray()
    _connect(ray)
    _check_fits(ray, graph)
    run = _Run(ray, graph, check_types=check_types, recorder=recorder)
    try:
        run.start()
        yield from run.results()
        run.finish()
    finally:
        run.close()
