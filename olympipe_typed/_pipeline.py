"""``Pipeline[T]``: a flow of ``T`` items; ``>>``, ``|``, run/stream, and the olympipe-style methods.

A pipeline is a node of a DAG that starts nothing when built. ``run()``,
``stream()`` and ``run_all()`` compile the DAG behind the pipelines asked
for (a node shared by several of them runs once) and hand it to a backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast, final, overload

from ._graph import PNode, SourceNode, SourceSpec, apply, compile_graph, gather
from ._ops import (
    ClassSpec,
    DropIfNone,
    Op,
    Options,
    check_int,
    check_seconds,
    label_of,
    method_ref,
)
from ._stage import Batch, Stage, _Call, as_template, make_op
from ._template import Leaf

if TYPE_CHECKING:
    from typing import Self

    from ._monitor import StageQueue
    from ._report import Recorder, RunReport
    from ._server import Connection, RouteHandler
    from .olympipe.pipes.generic import GenericPipe

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")
C = TypeVar("C")
A = TypeVar("A")
B = TypeVar("B")
D = TypeVar("D")
E = TypeVar("E")
P = ParamSpec("P")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")
T7 = TypeVar("T7")
T8 = TypeVar("T8")

Backend = Literal["process", "thread", "inline", "ray"]
StartMethod = Literal["fork", "forkserver", "spawn"]
PlanMode = Literal["auto", "per_stage"]
PathLike = str | os.PathLike[str]

__all__ = ["Backend", "CacheEnvelope", "Pipeline", "run_all", "source"]


@final
class CacheEnvelope(Generic[T_co]):
    """A ``cached_task`` result and the cache key it was stored under; ``uncache()`` unwraps it."""

    __slots__ = ("data", "key")

    def __init__(self, data: T_co, key: str) -> None:
        self.data = data
        self.key = key

    @property
    def lineage_hash(self) -> str:
        """olympipe's name for ``key``."""
        return self.key

    def __repr__(self) -> str:
        return f"CacheEnvelope({self.data!r}, key={self.key[:12]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CacheEnvelope):
            return False
        theirs = cast("CacheEnvelope[object]", other)
        return (self.data, self.key) == (theirs.data, theirs.key)

    def __hash__(self) -> int:
        return hash(self.key)

    def __reduce__(self) -> tuple[type[CacheEnvelope[T_co]], tuple[T_co, str]]:
        return (CacheEnvelope, (self.data, self.key))


@final
class Pipeline(Generic[T_co]):
    """A flow of ``T`` items: a source and the stages applied to it.

    Build it from any iterable (``Pipeline(data)`` or ``source(data)``), extend it
    with ``>> stage`` or the olympipe-style methods, then run it.

    >>> from olympipe_typed import stage
    >>> (Pipeline(range(4)).task(lambda x: x * 10) >> stage(lambda x: f"{x}")).run(backend="inline")
    ['0', '10', '20', '30']
    """

    __slots__ = ("_live", "_node", "_report")

    def __init__(
        self,
        datas: Iterable[T_co],
        /,
        *,
        monitoring: bool | None = None,
        inspect_messages: bool | None = None,
    ) -> None:
        """``monitoring`` and ``inspect_messages`` are olympipe's, accepted so that its
        programs run: every run keeps live per-stage counts (``queues``) anyway, and the
        items in flight are not copied."""
        _check_instance("a pipeline's source", datas, Iterable, "an iterable")
        self._node: PNode = SourceNode(SourceSpec(datas))
        self._report: RunReport | None = None
        self._live: Recorder | None = None

    @property
    def last_report(self) -> RunReport | None:
        """The report of this pipeline's last run (also a failed or stopped one), or None.

        >>> p = source(range(3)).task(lambda x: x + 1)
        >>> p.run(backend="inline")
        [1, 2, 3]
        >>> p.last_report.stages[0].items_out if p.last_report else None
        3
        """
        return self._report

    @property
    def queues(self) -> Mapping[str, StageQueue]:
        """What is in flight at each stage of this pipeline's current or last run, by stage
        name (olympipe's ``Pipeline.queues``); empty before the first run. Read-only, and
        live on the process and thread backends: another thread can watch a run with it.

        >>> p = source(range(3)).task(lambda x: x + 1)
        >>> p.run(backend="inline")
        [1, 2, 3]
        >>> q = p.queues["<lambda>"]
        >>> (q.items_in, q.items_out, q.qsize(), q.is_closed)
        (3, 3, 0, True)
        """
        recorder = self._live
        if recorder is None:
            return {}
        from ._monitor import StageQueue

        stages = (n.name for n in recorder.graph.nodes if n.op is not None)
        return MappingProxyType({name: StageQueue(recorder, name) for name in stages})

    def _then(self, op: Op) -> Pipeline[Any]:
        return _wrap(apply(self._node, Leaf(op)))

    # -- composition --

    @overload
    def __rshift__(self, other: Batch, /) -> Pipeline[list[T_co]]: ...
    @overload  # a Stage by its In and Out, not by what calling it directly returns
    def __rshift__(self, other: Stage[T_co, R, object], /) -> Pipeline[R]: ...
    @overload
    def __rshift__(self, other: _Call[T_co, R], /) -> Pipeline[R]: ...
    def __rshift__(self, other: object, /) -> Pipeline[Any]:
        return _wrap(apply(self._node, as_template(other)))

    def __or__(self, other: Pipeline[R], /) -> Pipeline[T_co | R]:
        """Gather two flows into one."""
        _check_instance("the right operand of |", other, Pipeline, "a Pipeline")
        return _wrap(gather([self._node, other._node]))

    # -- running --

    def run(
        self,
        *,
        backend: Backend = "process",
        progress: bool = False,
        check_types: bool = False,
        start_method: StartMethod | None = None,
        failures: PathLike | None = None,
        max_failures: int | float | None = None,
        journal: PathLike | None = None,
        plan: PlanMode = "auto",
    ) -> list[T_co]:
        """Run the pipeline and return every output item, in order.

        Args:
            backend: ``"process"`` (one process per stage worker), ``"thread"``,
                ``"inline"`` (sequential, in this thread) or ``"ray"``.
            progress: show live per-stage progress.
            check_types: check every item against each stage's annotations.
            start_method: for ``"process"``: ``"fork"``, ``"forkserver"`` or ``"spawn"``
                (default: the platform's).
            failures: a JSON Lines file to which each item that fails under
                ``on_error="collect"`` is appended as it fails (see ``load_failures``).
            max_failures: stop the run with ``FailureBudgetExceeded`` after more than this
                many collected failures (an int), or more than this fraction of the items
                a stage took (a float in (0, 1)).
            journal: an SQLite file that makes the run resumable: run again with the same
                journal after a crash, and the items already done are not run again.
            plan: ``"auto"``: the engine fuses adjacent function stages that leave their
                workers to it and sizes their groups (``report.plan`` shows how);
                ``"per_stage"``: one group of processes per stage, as written.
        """
        events = _execute(
            [self],
            backend=backend,
            progress=progress,
            check_types=check_types,
            start_method=start_method,
            failures=failures,
            max_failures=max_failures,
            journal=journal,
            plan=plan,
        )
        return cast("list[T_co]", _collect(events, 1)[0])

    def stream(
        self,
        *,
        backend: Backend = "process",
        progress: bool = False,
        check_types: bool = False,
        start_method: StartMethod | None = None,
        failures: PathLike | None = None,
        max_failures: int | float | None = None,
        journal: PathLike | None = None,
        plan: PlanMode = "auto",
    ) -> Iterator[T_co]:
        """Yield output items as they come, in order, with bounded memory.

        Leaving the loop early shuts the pipeline down. The options are ``run()``'s; with
        ``journal=``, a stream resumed after a crash yields only the outputs the caller has
        not taken yet (an output is taken once the caller asks for the next one).
        """
        taken: list[Callable[[], None]] = []  # the journal's, if any: an output was taken
        events = _execute(
            [self],
            backend=backend,
            progress=progress,
            check_types=check_types,
            start_method=start_method,
            failures=failures,
            max_failures=max_failures,
            journal=journal,
            plan=plan,
            cursor=True,
            taken=taken,
        )
        try:
            for _, items in events:
                if not taken:  # no journal
                    yield from cast("list[T_co]", items)
                    continue
                for item in cast("list[T_co]", items):
                    # Taken once the caller comes back, or closes the stream at this yield
                    # (a break): here, not in the journal's generator, which a Ctrl-C landing
                    # between it and this one would close with the output never handed on.
                    try:
                        yield item
                    finally:
                        taken[0]()
        finally:
            events.close()

    def __iter__(self) -> Iterator[T_co]:
        return self.stream()

    # -- drawing --

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart: stage names, worker counts, fan-out and merges.

        >>> print(source(range(3)).task(str, count=2).to_mermaid(), end="")
        flowchart LR
            n0(["source"])
            n1["str ×2"]
            n0 --> n1
            out0[/"output 0"/]
            n1 --> out0
        """
        from ._render import to_mermaid

        return to_mermaid(compile_graph([self._node]))

    def to_dot(self) -> str:
        """The graph in Graphviz dot: ``dot -Tpng`` draws it."""
        from ._render import to_dot

        return to_dot(compile_graph([self._node]))

    def wait_for_completion(
        self,
        other_pipes: Sequence[Pipeline[object]] | None = None,
        debug_graph: PathLike | None = None,
        *,
        backend: Backend = "process",
        progress: bool = False,
        check_types: bool = False,
        start_method: StartMethod | None = None,
        failures: PathLike | None = None,
        max_failures: int | float | None = None,
        journal: PathLike | None = None,
        plan: PlanMode = "auto",
    ) -> None:
        """Run, discarding outputs (for pipelines whose stages are sinks).

        The options are ``run()``'s; with ``journal=``, an item counts as done once every
        stage has processed it, and a resumed run skips the done items. ``debug_graph``
        (olympipe's): a file to write the graph to first, as ``print_graph`` does.
        """
        if journal is not None and other_pipes:
            msg = "journal= takes one pipeline: wait_for_completion() with other_pipes cannot"
            raise ValueError(msg)
        if debug_graph is not None:
            _write_graph([self, *(other_pipes or ())], debug_graph)
        events = _execute(
            [self, *(other_pipes or ())],
            backend=backend,
            progress=progress,
            check_types=check_types,
            start_method=start_method,
            failures=failures,
            max_failures=max_failures,
            journal=journal,
            plan=plan,
            keeps="done",
        )
        try:
            for _ in events:
                pass
        finally:
            events.close()

    # -- the olympipe-style fluent API --

    def task(
        self,
        task: Callable[[T_co], R],
        count: int | None = None,
        on_error: Callable[[T_co, Exception], R | None] | None = None,
    ) -> Pipeline[R]:
        """Apply ``task`` to each item, with ``count`` workers (None: the planner chooses,
        fusing it with its neighbours where it can); order kept.

        ``on_error(item, exc)``, as in olympipe: called when ``task`` raises; what it
        returns replaces the item, and ``None`` drops it. Without it, an error stops the
        run (``StageError``).
        """
        if on_error is None:
            return self._then(_op("map", task, Options(workers=count)))
        if not callable(cast("object", on_error)):  # for callers mypy does not see
            msg = f"on_error must be a callable or None (got {on_error!r})"
            raise TypeError(msg)
        return self._then(_op("map", task, Options(workers=count, on_error=DropIfNone(on_error))))

    @overload
    def filter(self: Pipeline[R | None]) -> Pipeline[R]: ...
    @overload
    def filter(self, keep_if_true: Callable[[T_co], bool]) -> Pipeline[T_co]: ...
    def filter(self, keep_if_true: Callable[[T_co], bool] | None = None) -> Pipeline[object]:
        """Keep items for which ``keep_if_true`` is true; without it, drop ``None``s."""
        if keep_if_true is None:
            return self._then(Op("filter", None, label="filter(not None)"))
        return self._then(_op("filter", keep_if_true, Options()))

    @overload
    def explode(self: Pipeline[Iterable[R]]) -> Pipeline[R]: ...
    @overload
    def explode(self, explode_function: Callable[[T_co], Iterable[R]]) -> Pipeline[R]: ...
    def explode(
        self, explode_function: Callable[[T_co], Iterable[object]] | None = None
    ) -> Pipeline[object]:
        """Replace each item by the items of ``explode_function(item)`` (or of the item itself)."""
        if explode_function is None:
            return self._then(Op("flat", None, label="explode"))
        return self._then(_op("flat", explode_function, Options()))

    def batch(
        self, batch_size: int = 2, keep_incomplete_batch: bool = True
    ) -> Pipeline[list[T_co]]:
        """Group items into lists of ``batch_size``; keep or drop the last short one."""
        check_int("batch_size", batch_size, 1)
        op = Op("batch", None, label=f"batch({batch_size})", size=batch_size)
        return self._then(op.replace(keep_incomplete=keep_incomplete_batch))

    def temporal_batch(self, time_interval: float) -> Pipeline[list[T_co]]:
        """Group the items that arrive within each ``time_interval`` seconds."""
        check_seconds("time_interval", time_interval)
        label = f"temporal_batch({time_interval}s)"
        return self._then(Op("temporal_batch", None, label=label, seconds=time_interval))

    def reduce(self, accumulator: R, reducer: Callable[[T_co, R], R]) -> Pipeline[R]:
        """Fold every item into ``accumulator`` with ``reducer(item, acc)``; emit the result once."""
        op = Op("reduce", reducer, label=f"reduce({label_of(reducer)})", initial=accumulator)
        return self._then(op)

    def checkpoint(
        self, initial: S, reducer: Callable[[T_co, S], S], emitter: Callable[[S], Iterable[R]]
    ) -> Pipeline[R]:
        """Fold every item into a state with ``reducer(item, state)``, starting from
        ``initial``; once the flow has ended, emit the items of ``emitter(state)``
        (olympipe's ``checkpoint``: a ``reduce`` whose result is several items)."""
        label = f"checkpoint({label_of(reducer)})"
        state: Pipeline[S] = self._then(Op("reduce", reducer, label=label, initial=initial))
        return state._then(_op("flat", emitter, Options()))

    def class_task(
        self,
        class_constructor: type[C],
        class_method: Callable[[C, T_co], R],
        class_args: Sequence[object] | None = None,
        close_method: Callable[[C], object] | None = None,
        class_kwargs: dict[str, object] | None = None,
        count: int = 1,
    ) -> Pipeline[R]:
        """Build ``class_constructor(*class_args, **class_kwargs)`` once per worker; call its method."""
        spec = ClassSpec(
            class_constructor,
            tuple(class_args or ()),
            dict(class_kwargs or {}),
            method=method_ref(class_constructor, class_method),
            close_method=None
            if close_method is None
            else method_ref(class_constructor, close_method),
        )
        return self._then(_op("map", spec, Options(workers=count)))

    def limit(self, packet_limit: int) -> Pipeline[T_co]:
        """Keep the first ``packet_limit`` items, then stop reading the source."""
        check_int("packet_limit", packet_limit, 0)
        return self._then(Op("limit", None, label=f"limit({packet_limit})", size=packet_limit))

    def timeout(self, timeout: float) -> Pipeline[T_co]:
        """End the stream when no item has arrived for ``timeout`` seconds (an inactivity limit)."""
        check_seconds("timeout", timeout)
        return self._then(Op("timeout", None, label=f"timeout({timeout}s)", seconds=timeout))

    @overload
    def split(
        self, split_function: Callable[[T_co], tuple[A | None, B | None]], n: int | None = None
    ) -> tuple[Pipeline[A], Pipeline[B]]: ...
    @overload
    def split(
        self,
        split_function: Callable[[T_co], tuple[A | None, B | None, D | None]],
        n: int | None = None,
    ) -> tuple[Pipeline[A], Pipeline[B], Pipeline[D]]: ...
    @overload
    def split(
        self,
        split_function: Callable[[T_co], tuple[A | None, B | None, D | None, E | None]],
        n: int | None = None,
    ) -> tuple[Pipeline[A], Pipeline[B], Pipeline[D], Pipeline[E]]: ...
    @overload
    def split(
        self, split_function: Callable[[T_co], tuple[R | None, ...]], n: int
    ) -> tuple[Pipeline[R], ...]: ...
    def split(
        self, split_function: Callable[[T_co], tuple[object, ...]], n: int | None = None
    ) -> tuple[Pipeline[object], ...]:
        """Route each item to several branches: branch i gets ``split_function(item)[i]`` unless None.

        The split function runs once per item, and each branch is a pipeline of its own.
        """
        count = n if n is not None else _tuple_length(split_function)
        shared: Pipeline[tuple[object, ...]] = self._then(_op("map", split_function, Options()))
        return tuple(shared._then(Op("flat", _Pick(i), label=f"split[{i}]")) for i in range(count))

    def gather(self, *others: Pipeline[R]) -> Pipeline[T_co | R]:
        """Merge this flow with ``others`` into one."""
        return _wrap(gather([self._node, *(o._node for o in others)]))

    def debug(self) -> Pipeline[T_co]:
        """Print each item as it passes (with the stage's name), unchanged, in order: one worker."""
        return self._then(Op("map", _Debug(), Options(workers=1), label="debug"))

    @overload
    def cached_task(
        self: Pipeline[CacheEnvelope[A]],
        task: Callable[[A], R],
        cache_dir: str | os.PathLike[str],
        count: int = 1,
        *,
        cache_key: str | None = None,
    ) -> Pipeline[CacheEnvelope[R]]: ...
    @overload
    def cached_task(
        self,
        task: Callable[[T_co], R],
        cache_dir: str | os.PathLike[str],
        count: int = 1,
        *,
        cache_key: str | None = None,
    ) -> Pipeline[CacheEnvelope[R]]: ...
    def cached_task(
        self,
        task: Callable[[Any], R],
        cache_dir: str | os.PathLike[str],
        count: int = 1,
        *,
        cache_key: str | None = None,
    ) -> Pipeline[CacheEnvelope[R]]:
        """Apply ``task`` once per distinct item across runs, caching results in ``cache_dir``.

        The key covers the item and what decides ``task``'s result: its code, closure,
        defaults and the globals it reads (see the guide); ``cache_key`` replaces that
        part, for a task that cannot be keyed or should keep its results across edits.
        Entries are signed; an unreadable, unsigned or wrongly typed one is recomputed.
        ``uncache()`` turns the envelopes back into results. After another cached
        task, ``task`` gets the result inside each envelope (as olympipe does), and
        the previous step's key stands for the item.

        Raises:
            TypeError: something ``task`` reads cannot be pickled, and no ``cache_key`` is given.
        """
        # Imported here: only cached tasks pay for pickle, hashlib and cloudpickle.
        from ._cache import Cached, function_key

        if cache_key is not None:
            _check_instance("cache_key", cache_key, str, "a str")
        cached = Cached(task, os.fspath(cache_dir), function_key(task, cache_key))
        op = Op("map", cached, Options(workers=count), label=f"cached({label_of(task)})")
        return self._then(op)

    def uncache(self: Pipeline[CacheEnvelope[R]]) -> Pipeline[R]:
        """The results inside ``cached_task``'s envelopes."""
        return self._then(Op("map", _uncache, label="uncache"))

    def create_pipe(
        self: Pipeline[T], pipe_class: type[GenericPipe[T, R]], /, **kwargs: Any
    ) -> Pipeline[R]:
        """olympipe's way to add a step by its class (``olympipe_typed.olympipe.GenericPipe``
        and its subclasses): ``count=`` workers (default 1), each of which builds one
        ``pipe_class(**kwargs)`` and calls its ``_perform_task`` on every item. A built-in
        step class (``TaskPipe``, ``BatchPipe``, ...) adds its method (``task``, ``batch``, ...)
        with ``kwargs`` as its arguments."""
        from .olympipe.pipes.generic import step_of

        made = step_of(self, pipe_class, kwargs)
        return made if isinstance(made, Pipeline) else self._then(made)

    def cleanup(self) -> None:
        """olympipe compatibility: nothing to do, as every run stops its processes and frees
        its queues before it returns (or raises)."""

    @staticmethod
    def are_pipelines_running(pipes: Sequence[Pipeline[object]]) -> bool:
        """Whether a run of any of ``pipes`` is going on (in another thread)."""
        return any(p._live is not None and p._live.ended is None for p in pipes)

    def start(self) -> Self:
        """Olympipe compatibility: running starts at ``wait_for_result()``; returns ``self``."""
        return self

    def wait_for_result(
        self, debug_graph: PathLike | None = None, *, backend: Backend = "process"
    ) -> list[T_co]:
        """Run the pipeline and return its outputs (olympipe's name for ``run()``).

        ``debug_graph``: a file to write the graph to first, as ``print_graph`` does.
        """
        if debug_graph is not None:
            self.print_graph(debug_graph)
        return self.run(backend=backend)

    def wait_for_results(
        self,
        other_pipes: Sequence[Pipeline[R]] | None = None,
        debug_graph: PathLike | None = None,
        *,
        backend: Backend = "process",
    ) -> list[list[T_co | R]]:
        """Run this pipeline and ``other_pipes`` as one graph; one list of results each.

        ``debug_graph``: a file to write the graph to first, as ``print_graph`` does.
        """
        pipes: list[Pipeline[T_co | R]] = [self, *(other_pipes or ())]
        if debug_graph is not None:
            _write_graph(pipes, debug_graph)
        return Pipeline.wait_for_all_results(pipes, backend=backend)

    def print_graph(self, debug_graph: PathLike) -> None:
        """Write the graph to the file ``debug_graph``, in Graphviz dot (``to_dot()``);
        ``dot -Tpng FILE -o FILE.png`` draws it. (olympipe writes the same dot text to that
        file, and renders it with Graphviz when its Python package is installed.)"""
        _write_graph([self], debug_graph)

    def wait_and_reduce(
        self, accumulator: R, reducer: Callable[[T_co, R], R], *, backend: Backend = "process"
    ) -> R:
        """Run, folding outputs with ``reducer(item, acc)``; return the final accumulator."""
        return self.reduce(accumulator, reducer).run(backend=backend)[0]

    @staticmethod
    def wait_for_all_results(
        pipes: Sequence[Pipeline[T]], *, backend: Backend = "process"
    ) -> list[list[T]]:
        """Run several pipelines as one graph (shared parts once); one list of results each."""
        return list(run_all(*pipes, backend=backend))

    @staticmethod
    def server(
        route_handlers: Sequence[RouteHandler[R]],
        port: int = 8000,
        host: str = "localhost",
        debug: bool = False,
        inactivity_timeout: float | None = None,
    ) -> Pipeline[tuple[Connection, R]]:
        """An HTTP/1.1 server as a source: one ``(connection, payload)`` item per request.

        ``payload`` is ``handler(body)`` for the first route whose method and URL path
        match, ``body`` the request's JSON (None when empty or not JSON). A later stage, in
        any process, answers with ``send_json_response(connection, data)``. The server
        listens on ``host:port`` while the pipeline runs (building starts nothing), answers
        a malformed request (400) or an unknown route (404) itself, and a failing handler's
        request with a 500; it ends after ``inactivity_timeout`` seconds without a request
        or an answer (None: never). While idle it sends ticks that the stage "drop idle
        ticks" takes out, so that a stopped run closes it (within a second).
        """
        from ._server import check_server, is_request, server_source  # not on a run's path

        check_server(route_handlers, port, host, debug, inactivity_timeout)
        args = (tuple(route_handlers), host, port, debug, inactivity_timeout)
        spec = SourceSpec(None, server_source, args, name="server")
        ticks = Op("filter", is_request, Options(name="drop idle ticks"), label="drop idle ticks")
        return _wrap(SourceNode(spec))._then(ticks)

    def __repr__(self) -> str:
        return f"<Pipeline ending at {_node_name(self._node)}>"


def _wrap(node: PNode) -> Pipeline[Any]:
    """A pipeline object for an already-built node (``Pipeline()`` itself takes an iterable)."""
    p: Pipeline[Any] = object.__new__(Pipeline)  # pyright: ignore[reportUnknownVariableType]
    p._node = node
    p._report = None
    p._live = None
    return p


def _write_graph(pipes: Sequence[Pipeline[object]], path: PathLike) -> None:
    """The graph behind ``pipes``, in dot, written to ``path``."""
    from ._render import to_dot

    with open(path, "w", encoding="utf-8") as f:
        f.write(to_dot(compile_graph([p._node for p in pipes])))


def _node_name(node: PNode) -> str:
    from ._graph import producer_name

    return producer_name(node)


def _op(kind: Literal["map", "flat", "filter"], fn: object, options: Options) -> Op:
    if isinstance(fn, ClassSpec):
        return make_op(kind, fn, options)
    if not callable(fn):
        msg = f"expected a callable, got {type(fn).__qualname__}"
        raise TypeError(msg)
    if options.workers is None and _holds_state(fn):
        options = options.replace(workers=1)
    return make_op(kind, fn, options)


def _holds_state(fn: object) -> bool:
    """Whether ``fn`` is an object's method or a callable object: something whose state
    the items may change (a counter, a cache). olympipe runs such a step in one process,
    and so does the fluent API when no ``count`` is given: copies in several workers would
    each see part of the items."""
    import types

    if isinstance(fn, types.MethodType):
        return not isinstance(fn.__self__, type | types.ModuleType)
    plain = (
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodDescriptorType,
        types.WrapperDescriptorType,
        types.MethodWrapperType,
        type,
    )
    module = type(fn).__module__
    return not isinstance(fn, plain) and module.partition(".")[0] not in _STATELESS_MODULES


# Callable objects that hold no state the items change: partials, itemgetters, our stages.
_STATELESS_MODULES = frozenset({"functools", "operator", "olympipe_typed"})


def _check_instance(what: str, value: object, cls: type, expected: str) -> None:
    if not isinstance(value, cls):
        msg = f"{what} must be {expected} (got {type(value).__qualname__})"
        raise TypeError(msg)


def _tuple_length(fn: Callable[..., object]) -> int:
    """How many branches ``split`` makes, from ``fn``'s ``tuple[...]`` return annotation."""
    import typing

    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:
        ret = None
    args = typing.get_args(ret)
    if typing.get_origin(ret) is tuple and args and args[-1] is not Ellipsis:
        return len(args)
    msg = f"cannot tell how many branches {label_of(fn)!r} returns: annotate it or pass n="
    raise ValueError(msg)


@final
class _Pick:
    """``split`` branch i: the i-th element of the split function's tuple, unless None."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, parts: tuple[object, ...]) -> list[object]:
        value = parts[self.index] if self.index < len(parts) else None
        return [] if value is None else [value]


@final
class _Debug:
    __slots__ = ()

    def __call__(self, item: T) -> T:
        print(f"[debug pid={os.getpid()}] {item!r}", flush=True)
        return item


def _uncache(envelope: CacheEnvelope[T]) -> T:
    return envelope.data


@overload
def source(data: Iterable[T], /) -> Pipeline[T]: ...
@overload
def source(fn: Callable[P, Iterable[T]], /) -> Callable[P, Pipeline[T]]: ...
def source(data: object, /) -> object:
    """A pipeline reading ``data``, any iterable, generators included; or a reusable source.

    On a generator function, ``@source`` makes a function that returns a
    pipeline; the generator runs only when the pipeline runs.

    >>> source([1, 2, 3]).run(backend="inline")
    [1, 2, 3]
    >>> from collections.abc import Iterator
    >>> @source
    ... def countdown(n: int) -> Iterator[int]:
    ...     yield from range(n, 0, -1)
    >>> countdown(3).run(backend="inline")
    [3, 2, 1]
    """
    if isinstance(data, Iterable):
        return Pipeline(cast("Iterable[object]", data))
    if callable(data):
        return _SourceFactory(cast("Callable[..., Iterable[object]]", data))
    msg = f"source() takes an iterable or a generator function (got {type(data).__qualname__})"
    raise TypeError(msg)


@final
class _SourceFactory:
    """What ``@source`` returns: calling it gives a pipeline over ``fn(*args, **kwargs)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Iterable[object]]) -> None:
        self.fn = fn

    def __call__(self, *args: object, **kwargs: object) -> Pipeline[Any]:
        spec = SourceSpec(None, self.fn, args, kwargs, name=label_of(self.fn))
        return _wrap(SourceNode(spec))

    def __repr__(self) -> str:
        return f"source({label_of(self.fn)})"


# fmt: off
@overload
def run_all(p1: Pipeline[T1], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], p3: Pipeline[T3], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2], list[T3]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], p3: Pipeline[T3], p4: Pipeline[T4], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2], list[T3], list[T4]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], p3: Pipeline[T3], p4: Pipeline[T4], p5: Pipeline[T5], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], p3: Pipeline[T3], p4: Pipeline[T4], p5: Pipeline[T5], p6: Pipeline[T6], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], p3: Pipeline[T3], p4: Pipeline[T4], p5: Pipeline[T5], p6: Pipeline[T6], p7: Pipeline[T7], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7]]: ...
@overload
def run_all(p1: Pipeline[T1], p2: Pipeline[T2], p3: Pipeline[T3], p4: Pipeline[T4], p5: Pipeline[T5], p6: Pipeline[T6], p7: Pipeline[T7], p8: Pipeline[T8], /, *, backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8]]: ...
@overload
def run_all(*pipelines: Pipeline[T], backend: Backend = ..., progress: bool = ..., check_types: bool = ..., start_method: StartMethod | None = ..., failures: PathLike | None = ..., max_failures: int | float | None = ...) -> tuple[list[T], ...]: ...
# fmt: on
def run_all(
    *pipelines: Pipeline[object],
    backend: Backend = "process",
    progress: bool = False,
    check_types: bool = False,
    start_method: StartMethod | None = None,
    failures: PathLike | None = None,
    max_failures: int | float | None = None,
    plan: PlanMode = "auto",
) -> tuple[list[Any], ...]:
    """Run several pipelines as one graph; return one list of outputs per pipeline.

    A node they share runs once, and every item it emits reaches every child
    (broadcast, never competition).

    >>> from olympipe_typed import stage
    >>> base = source(range(4))
    >>> run_all(base.task(lambda x: x + 1), base.task(str), backend="inline")
    ([1, 2, 3, 4], ['0', '1', '2', '3'])
    """
    for p in pipelines:
        _check_instance("each argument of run_all()", p, Pipeline, "a Pipeline")
    events = _execute(
        pipelines,
        backend=backend,
        progress=progress,
        check_types=check_types,
        start_method=start_method,
        failures=failures,
        max_failures=max_failures,
        plan=plan,
    )
    return tuple(_collect(events, len(pipelines)))


def _collect(events: Generator[tuple[int, list[Any]]], count: int) -> list[list[Any]]:
    """Every output of a run, one list per output."""
    results: list[list[Any]] = [[] for _ in range(count)]
    try:
        for index, items in events:
            results[index] += items
    finally:
        # At once, even when Ctrl-C lands here rather than inside the run: the traceback
        # would keep the generator, and the run's workers, alive until it is dropped.
        events.close()
    return results


def _execute(
    pipelines: Sequence[Pipeline[object]],
    *,
    backend: Backend,
    progress: bool = False,
    check_types: bool = False,
    start_method: StartMethod | None = None,
    failures: PathLike | None = None,
    max_failures: int | float | None = None,
    journal: PathLike | None = None,
    keeps: Literal["outputs", "done"] = "outputs",
    cursor: bool = False,
    plan: PlanMode = "auto",
    taken: list[Callable[[], None]] | None = None,
) -> Generator[tuple[int, list[Any]]]:
    """Run the pipelines as one graph; leave the run's report on each of them.

    With ``journal``, the run is resumable (``_journal``): the events are (0, outputs of a
    batch of source items), earlier runs' first; with ``cursor`` too, (0, [output]) for each
    output the caller has not taken yet, counted as taken when the caller comes back: the
    journal's ``taken`` is put in ``taken`` for the caller's own generator to call.
    """
    from ._failures import FailureLog
    from ._report import Recorder
    from ._runner import execute

    graph = compile_graph([p._node for p in pipelines])
    log = FailureLog(failures, max_failures)  # checks max_failures, opens the file
    book = None
    if journal is not None:
        from ._journal import Journal

        try:
            book = Journal(journal, graph, keeps, eager=cursor)
        except BaseException:
            log.close()
            raise
        graph = book.graph_to_run()
    recorder = Recorder(graph, backend, progress=progress, failures=log)
    for p in pipelines:
        p._live = recorder
    completed = False
    try:
        if book is None or not book.finished:
            events = execute(
                graph,
                backend=backend,
                check_types=check_types,
                start_method=start_method,
                recorder=recorder,
                plan=plan,
            )
        else:  # a finished journal: its results, and nothing to run
            events = iter(())
        try:
            if book is None:
                yield from events
            elif not cursor:
                for outputs in book.outputs(events):
                    yield 0, outputs
            else:
                if taken is not None:
                    taken.append(book.taken)
                for output in book.untaken(events):
                    yield 0, [output]
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        recorder.check_budget()
        completed = True
    finally:
        log.close()
        if book is not None:
            book.close()
        recorder.finish(completed=completed)
        report = recorder.report()
        for p in pipelines:
            p._report = report
