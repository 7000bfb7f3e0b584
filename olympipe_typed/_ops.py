"""Operators: what one stage does to items, the same code on every backend.

An ``Op`` is the picklable description of a graph node (a stage function and
its options). ``Op.open()`` builds, inside the worker that runs it, a
``Processor`` that turns each input into zero or more outputs:

    process(item, emit)   called once per input item, calls emit(output) 0..n times
    poll(now, emit)       called when idle, for time-based behaviour (temporal batches)
    flush(emit)           called once at end of stream (a partial batch, a reduction)
    close()               called once per worker at the end (class stages' close())

Backends differ only in where and how often these are called, which is what
makes ``"inline"`` the reference semantics of every other backend.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Never, TypeAlias, cast

from ._errors import StageError
from ._failures import Failure, failure_of
from ._hints import UNKNOWN, item_checker, short_repr

if TYPE_CHECKING:
    from ._aio import Runner

Emit: TypeAlias = Callable[[object], None]
# The item type is not known where options are declared: any (item, exc) -> replacement.
ErrorPolicy: TypeAlias = Literal["raise", "skip", "collect"] | Callable[[Never, Exception], object]
Kind: TypeAlias = Literal[
    "map",
    "flat",
    "filter",
    "batch",
    "temporal_batch",
    "reduce",
    "limit",
    "timeout",
    "merge",
]

# Kinds that keep state across items, so one worker must see every item in order.
STATEFUL: Final = frozenset({"batch", "temporal_batch", "reduce", "limit", "timeout"})

AsyncKind: TypeAlias = Literal["coroutine", "asyncgen"] | None

_CO_COROUTINE: Final = 0x80
_CO_ASYNC_GENERATOR: Final = 0x200

#: Items in flight per worker of an async stage when ``concurrency`` is not given.
ASYNC_CONCURRENCY: Final = 16


def async_kind(fn: object) -> AsyncKind:
    """``"coroutine"`` for an ``async def``, ``"asyncgen"`` for an async generator function
    (through partials, bound methods and callable objects), else None.

    Reads the code's flags, as ``inspect`` does, without importing it (start-up time).
    """
    for _ in range(8):  # partial(partial(method)): unwrap a few layers, never loop
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is None or not callable(inner):
            inner = getattr(fn, "__func__", None)  # a bound method
        if inner is None:
            break
        fn = inner
    code = getattr(fn, "__code__", None)
    if code is None and not isinstance(fn, type):  # a callable object: its __call__
        call = type(fn).__call__
        code = getattr(getattr(call, "__func__", call), "__code__", None)
    flags: int = getattr(code, "co_flags", 0)
    if flags & _CO_COROUTINE:
        return "coroutine"
    if flags & _CO_ASYNC_GENERATOR:
        return "asyncgen"
    return None


class Options:
    """The options every stage kind takes; checked when the stage is declared.

    (Plain slotted classes here and in the graph, not dataclasses: importing
    dataclasses costs more than the rest of the package's start-up.)
    """

    __slots__ = (
        "concurrency",
        "item_timeout",
        "max_items_per_worker",
        "name",
        "on_error",
        "ordered",
        "queue_size",
        "rate",
        "resources",
        "retries",
        "workers",
    )

    def __init__(
        self,
        name: str | None = None,
        workers: int | None = None,
        ordered: bool = True,
        queue_size: int | None = None,
        on_error: ErrorPolicy = "raise",
        retries: int = 0,
        resources: Mapping[str, float] | None = None,
        item_timeout: float | None = None,
        max_items_per_worker: int | None = None,
        concurrency: int | None = None,
        rate: float | None = None,
    ) -> None:
        self.name = name
        # None: the planner chooses (process backend), 1 elsewhere.
        self.workers = workers
        self.ordered = ordered
        self.queue_size = queue_size
        self.on_error: ErrorPolicy = on_error
        self.retries = retries
        # What one worker needs where the backend places workers on machines (Ray):
        # "num_cpus", "num_gpus", "memory", or any custom resource name -> amount.
        self.resources = resources
        # Seconds one item may take before its worker is stopped and replaced, and items a
        # worker takes before it is replaced: both run the function in a child of the worker.
        self.item_timeout = item_timeout
        self.max_items_per_worker = max_items_per_worker
        # Items in flight at once in each worker (coroutines of an async function, threads of
        # a plain one; None: 16 and 1), and items a second that start, over all the workers.
        self.concurrency = concurrency
        self.rate = rate
        # Checked at decoration time, for callers that mypy does not see.
        if self.workers is not None:
            check_int("workers", self.workers, 1)
        _check_resources(self.resources)
        if self.queue_size is not None:
            check_int("queue_size", self.queue_size, 1)
        check_int("retries", self.retries, 0)
        if self.item_timeout is not None:
            check_seconds("item_timeout", self.item_timeout)
        if self.max_items_per_worker is not None:
            check_int("max_items_per_worker", self.max_items_per_worker, 1)
        if self.concurrency is not None:
            check_int("concurrency", self.concurrency, 1)
        if self.rate is not None:
            check_seconds("rate", self.rate, what="items a second")
        _check_policy(self.on_error)
        _check_name(self.name)

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def replace(self, **changes: Any) -> Options:
        """A copy with ``changes`` (checked again)."""
        fields: dict[str, Any] = dict(zip(self.__slots__, self._fields(), strict=True))
        fields.update(changes)
        return Options(**fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(tuple(map(repr, self._fields())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Options({args})"


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an int >= ``minimum`` (message names all three)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"{name} must be an int >= {minimum} (got {value!r})"
        raise ValueError(msg)


def check_seconds(name: str, value: object, *, what: str = "seconds") -> None:
    """Raise ValueError unless ``value`` is a positive number (of seconds)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        msg = f"{name} must be > 0 {what} (got {value!r})"
        raise ValueError(msg)


def _check_policy(value: object) -> None:
    if value not in ("raise", "skip", "collect") and not callable(value):
        msg = f"on_error must be 'raise', 'skip', 'collect' or a callable (got {value!r})"
        raise ValueError(msg)


class DropIfNone:
    """olympipe's ``on_error``: ``handler(item, exc)`` replaces the failed item, and ``None``
    drops it (a plain callable ``on_error`` passes ``None`` on as the item)."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[Any, Exception], object]) -> None:
        self.handler = handler

    def __call__(self, item: object, exc: Exception) -> object:
        return self.handler(item, exc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DropIfNone) and other.handler == self.handler

    def __hash__(self) -> int:
        return hash(self.handler)

    def __repr__(self) -> str:
        return f"DropIfNone({label_of(self.handler)})"


def _check_resources(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        for k, v in cast("Mapping[object, object]", value).items()
    ):
        msg = f"resources must map resource names to amounts >= 0 (got {value!r})"
        raise ValueError(msg)


def _check_name(value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        msg = f"name must be a non-empty str or None (got {value!r})"
        raise ValueError(msg)


class ClassSpec:
    """A stateful stage: the instance is built once per worker, inside the worker."""

    __slots__ = ("args", "close_method", "cls", "kwargs", "method")

    def __init__(
        self,
        cls: type,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        method: str | Callable[..., Any] = "__call__",
        close_method: str | Callable[..., Any] | None = "close",
    ) -> None:
        # A method or function is kept by name when it is the class's attribute of that name
        # (so a subclass's override is called), else as itself, called with the instance.
        self.cls = cls
        self.args = args
        self.kwargs = kwargs
        self.method = method
        self.close_method = close_method

    def __repr__(self) -> str:
        return f"ClassSpec({self.cls.__qualname__}, {self.args!r}, {self.kwargs!r})"

    def build(self) -> tuple[Callable[[Any], Any], Callable[[], object] | None]:
        instance = self.cls(*self.args, **self.kwargs)
        closer = _bind(instance, self.close_method) if self.close_method else None
        method = _bind(instance, self.method)
        if method is None:
            msg = f"{self.cls.__qualname__} has no method {self.method!r}"
            raise AttributeError(msg)
        return method, closer


def _bind(instance: object, method: str | Callable[..., Any]) -> Callable[..., Any] | None:
    """``instance``'s method: by name, or a function given itself, called with the instance."""
    if isinstance(method, str):
        bound: Callable[..., Any] | None = getattr(instance, method, None)
        return bound
    import functools

    return functools.partial(method, instance)


def method_ref(cls: type, fn: Callable[..., Any]) -> str | Callable[..., Any]:
    """How a ClassSpec refers to ``fn``: by name if it is ``cls``'s attribute of that name."""
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and getattr(cls, name, None) is fn:
        return name
    return fn


_NO_OPTIONS: Final = Options()


class Op:
    """One graph node: the kind of operator, its function or class, its options and hints."""

    __slots__ = (
        "enveloped",
        "fn",
        "in_hint",
        "initial",
        "keep_incomplete",
        "kind",
        "label",
        "options",
        "out_hint",
        "seconds",
        "size",
    )

    def __init__(
        self,
        kind: Kind,
        fn: Callable[..., object] | ClassSpec | None,
        options: Options = _NO_OPTIONS,
        label: str = "stage",
        in_hint: object = UNKNOWN,
        out_hint: object = UNKNOWN,
        # Kind-specific parameters: batch size, seconds, an accumulator.
        size: int = 0,
        seconds: float | None = None,
        keep_incomplete: bool = True,
        initial: object = None,
        enveloped: bool = False,
    ) -> None:
        self.kind: Kind = kind
        self.fn = fn
        self.options = options
        self.label = label
        self.in_hint = in_hint
        self.out_hint = out_hint
        self.size = size
        self.seconds = seconds
        self.keep_incomplete = keep_incomplete
        self.initial = initial
        # A journaled run: items are (first source index, count, [items]) envelopes, one out
        # per one in.
        self.enveloped = enveloped

    def __repr__(self) -> str:
        return f"Op({self.kind!r}, {self.label!r}, {self.options!r})"

    @property
    def name(self) -> str:
        return self.options.name or self.label

    @property
    def stateful(self) -> bool:
        return self.kind in STATEFUL

    def replace(self, **changes: Any) -> Op:
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return Op(**fields)

    def open(
        self,
        name: str | None = None,
        *,
        check_types: bool = False,
        processes: bool = False,
        shipped: bytes | None = None,
        workers: int = 1,
    ) -> Processor:
        """Build this node's processor; call it in the worker that will run it.

        ``processes``: a stage with ``item_timeout`` or ``max_items_per_worker`` runs its
        function in a child process of this worker (else in a helper thread); ``shipped``
        is the op as the worker received it, pickled, if it was. ``workers``: how many
        workers run the node (each starts its share of ``rate``).
        """
        return Processor(
            self,
            name or self.name,
            check_types=check_types,
            processes=processes,
            shipped=shipped,
            workers=workers,
        )

    @property
    def async_kind(self) -> AsyncKind:
        """Whether the stage's function (or class stage's method) is ``async``."""
        fn = self.fn
        if fn is None or self.kind not in ("map", "flat", "filter"):
            return None
        if isinstance(fn, ClassSpec):
            method = getattr(fn.cls, fn.method, None) if isinstance(fn.method, str) else fn.method
            return async_kind(method)
        return async_kind(fn)

    @property
    def concurrency(self) -> int:
        """Items in flight at once in each worker (1 but for I/O stages)."""
        if self.fn is None or self.kind not in ("map", "flat", "filter"):
            return 1
        given = self.options.concurrency
        if given is not None:
            return given
        return ASYNC_CONCURRENCY if self.async_kind is not None else 1

    @property
    def waits(self) -> bool:
        """An I/O stage: async, or with ``concurrency=`` or ``rate=`` (never fused or sized)."""
        opts = self.options
        return opts.concurrency is not None or opts.rate is not None or self.async_kind is not None

    @property
    def isolated(self) -> bool:
        """Whether the function runs in a runner it can be stopped in (see ``_isolate``)."""
        opts = self.options
        return (
            self.fn is not None
            and self.kind in ("map", "flat", "filter")
            and (opts.item_timeout is not None or opts.max_items_per_worker is not None)
        )


class Processor:
    """The live state of one worker of one node (see the module docstring)."""

    def __init__(
        self,
        op: Op,
        name: str,
        *,
        check_types: bool,
        processes: bool = False,
        shipped: bytes | None = None,
        workers: int = 1,
    ) -> None:
        self.op = op
        self.name = name
        self.exhausted = False  # True once the node wants no more input (limit, timeout)
        self._closer: Callable[[], object] | None = None
        # Items that failed under on_error="collect", for the backend to hand to the caller.
        self.failures: list[Failure[Any]] = []
        fn: Callable[..., Any] | ClassSpec | None = op.fn
        if op.isolated:
            from ._isolate import runner

            fn = runner(op, name, processes=processes, shipped=shipped)
            self._closer = fn.close
        elif isinstance(fn, ClassSpec):
            spec = fn
            try:
                fn, self._closer = spec.build()
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc} (while constructing {spec.cls.__qualname__})"
                raise StageError(name, "<none: building the stage>", msg) from exc
        # An I/O stage: its items wait in a Runner (an event loop, or threads), and the
        # sequential paths call fn through it (awaited, at the rate's pace).
        self._runner: Runner | None = None
        self._plain: Callable[..., Any] | None = None
        assert not isinstance(fn, ClassSpec)  # built above
        if fn is not None and op.waits:
            from ._aio import Limiter, Runner

            rate = op.options.rate
            limiter = None if rate is None else Limiter(rate / max(1, workers))
            self._runner = Runner(async_kind(fn), op.concurrency, limiter)
            self._plain = fn
            fn = self._runner.bind(fn)
        self._fn: Callable[..., Any] | None = fn
        self._check_in = item_checker(name, "input", op.in_hint) if check_types else None
        self._check_out = item_checker(name, "output", op.out_hint) if check_types else None
        self._buffer: list[object] = []
        self._started = time.monotonic()
        self._last = self._started
        self._acc = op.initial
        self._seen = 0
        self.process: Callable[[object, Emit], None] = getattr(self, f"_{op.kind}")
        # Workers hand over whole messages; plain map/filter/flat stages then run a tight loop.
        self.process_many: Callable[[list[Any], list[Any]], None] = self._many
        if fn is not None and not check_types and op.kind in ("map", "filter", "flat"):
            self.process_many = getattr(self, f"_{op.kind}_many")
        # Keyed graphs (after a merge) number each item's outputs: they take ``each``, which
        # keeps an I/O stage's items in flight together as ``process_many`` does.
        self.each: Callable[[list[Any]], list[list[Any]]] | None = None
        # A worker that reads ahead starts the next messages' items while this one's are in
        # flight (``start_ahead``): ``concurrency`` items stay in flight across messages.
        self.start_ahead: Callable[[list[Any]], None] | None = None
        self._ahead: deque[tuple[list[Any], Callable[[], list[Any]]]] = deque()
        if self._runner is not None and (self._runner.is_async or self._runner.concurrency > 1):
            self.process_many = self._concurrent_many
            if not op.enveloped:
                self.each = self._each
                self.start_ahead = self._start_ahead
        if op.enveloped:
            self._envelop()

    def _envelop(self) -> None:
        """Take and give (first source index, count, [items]) envelopes, for ``count`` source
        items from ``first`` on: each input envelope gives one output envelope, holding what
        the stage made of its items (see ``_journal``)."""
        process = self.process
        many = self.process_many
        if many == self._many:  # the generic loop calls self.process: the inner one here

            def each(items: list[Any], out: list[Any]) -> None:
                emit = out.append
                for item in items:
                    process(item, emit)

            many = each

        def process_envelope(envelope: object, emit: Emit) -> None:
            first, count, items = cast("tuple[int, int, list[Any]]", envelope)
            outputs: list[Any] = []
            many(items, outputs)
            emit((first, count, outputs))

        def process_envelopes(envelopes: list[Any], out: list[Any]) -> None:
            for first, count, items in envelopes:
                outputs: list[Any] = []
                many(items, outputs)
                out.append((first, count, outputs))

        self.process = process_envelope
        self.process_many = process_envelopes

    # -- whole messages at once: the workers' hot path --

    def _many(self, items: list[Any], out: list[Any]) -> None:
        process, emit = self.process, out.append
        for item in items:
            process(item, emit)
            if self.exhausted:
                return

    def _map_many(self, items: list[Any], out: list[Any]) -> None:
        # map() at C speed. When fn raises, list.extend keeps what it already appended,
        # so the count of new outputs says which item failed; map has moved past it.
        fn = self._fn
        assert fn is not None
        rest = iter(items)
        position = 0  # index in items of the next item map() will take
        while True:
            mark = len(out)
            try:
                out.extend(map(fn, rest))
            except Exception as exc:
                failed = position + len(out) - mark
                self._recover(items[failed], exc, out.append)
                position = failed + 1
            else:
                return

    def _filter_many(self, items: list[Any], out: list[Any]) -> None:
        fn, emit = self._fn, out.append
        assert fn is not None
        rest = iter(items)
        while True:
            try:
                for item in rest:
                    if fn(item):
                        emit(item)
            except Exception as exc:
                self._recover(item, exc, emit)  # pyright: ignore[reportPossiblyUnboundVariable]
            else:
                return

    def _flat_many(self, items: list[Any], out: list[Any]) -> None:
        fn, extend = self._fn, out.extend
        assert fn is not None
        rest = iter(items)
        while True:
            try:
                for item in rest:
                    extend(list(fn(item)))  # all of an item's outputs, or none
            except Exception as exc:
                self._recover(item, exc, out.append)  # pyright: ignore[reportPossiblyUnboundVariable]
            else:
                return

    def _concurrent_many(self, items: list[Any], out: list[Any]) -> None:
        """An I/O stage's message: ``concurrency`` items in flight, outputs in the items' order."""
        for outputs in self._each(items):
            out.extend(outputs)

    def _each(self, items: list[Any]) -> list[list[Any]]:
        """An I/O stage's items, ``concurrency`` in flight: each item's outputs, in order.
        Failures are handled here, in order, once the items are all done."""
        runner = self._runner
        assert runner is not None
        if self._ahead and self._ahead[0][0] is items:  # started by start_ahead
            results = self._ahead.popleft()[1]()
        else:
            results = runner.map(self._one, self._one_async, items)
        each: list[list[Any]] = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, _Failed):
                outputs: list[Any] = []
                _, value = self._failed(item, result.exc)
                if value is not None:
                    self._emit_checked(value[0], outputs.append)
                each.append(outputs)
            else:
                each.append(result)
        return each

    def _start_ahead(self, items: list[Any]) -> None:
        """Start a message's items now, behind those started before; ``process_many`` of the
        same list, later, waits for them (messages are processed in the order started)."""
        runner = self._runner
        assert runner is not None
        self._ahead.append((items, runner.start(self._one, self._one_async, items)))

    def _one(self, item: object) -> list[Any] | _Failed:
        """One item of an I/O stage, in a thread: its outputs, after its retries."""
        if self._check_in is not None:
            self._check_in(item)
        fn = self._plain
        assert fn is not None
        exc: Exception | None = None
        for _ in range(self.op.options.retries + 1):
            try:
                return self._checked(item, fn(item))
            except Exception as e:
                exc = e
        assert exc is not None
        return _Failed(exc)

    async def _one_async(self, item: object) -> list[Any] | _Failed:
        """One item of an async stage, on the worker's loop: its outputs, after its retries."""
        if self._check_in is not None:
            self._check_in(item)
        fn, runner = self._plain, self._runner
        assert fn is not None
        assert runner is not None
        exc: Exception | None = None
        for _ in range(self.op.options.retries + 1):
            try:
                return self._checked(item, await runner.attempt(fn, item))
            except Exception as e:
                exc = e
        assert exc is not None
        return _Failed(exc)

    def _checked(self, item: object, result: object) -> list[Any]:
        """One item's outputs from the function's result, type-checked when asked."""
        kind = self.op.kind
        if kind == "filter":
            return [item] if result else []
        outputs = list(cast("Iterable[object]", result)) if kind == "flat" else [result]
        if self._check_out is not None:
            for value in outputs:
                self._check_out(value)
        return outputs

    def _recover(self, item: object, exc: Exception, emit: Emit) -> None:
        """``item`` failed once in a fast loop: the remaining retries, then on_error."""
        fn = self._fn
        assert fn is not None
        for _ in range(self.op.options.retries):
            try:
                result = fn(item)
                outputs = list(result) if self.op.kind == "flat" else [result]
            except Exception as again:
                exc = again
                continue
            if self.op.kind == "filter":
                if result:
                    emit(item)
            else:
                for value in outputs:
                    emit(value)
            return
        _, value = self._failed(item, exc)
        if value is not None:
            emit(value[0])

    # -- calling the user's function, with retries, on_error and type checks --

    def _call(self, item: object) -> tuple[bool, Any]:
        """Return (True, result), or (False, replacement-or-None) when on_error handled it."""
        if self._check_in is not None:
            self._check_in(item)
        fn = self._fn
        assert fn is not None
        attempts = self.op.options.retries + 1
        for attempt in range(attempts):
            try:
                return True, fn(item)
            except Exception as exc:
                if attempt + 1 < attempts:
                    continue
                return self._failed(item, exc)
        raise AssertionError  # pragma: no cover - the loop always returns

    def _failed(self, item: object, exc: Exception) -> tuple[bool, Any]:
        policy = self.op.options.on_error
        if policy == "skip":
            self.skipped += 1
            return False, None
        if policy == "collect":
            attempts = self.op.options.retries + 1
            self.failures.append(failure_of(self.name, item, exc, attempts))
            return False, None
        if callable(policy):
            replace = cast("Callable[[object, Exception], object]", policy)
            try:
                value = replace(item, exc)
            except Exception as again:
                msg = (
                    f"its on_error handler raised {type(again).__name__}: {again} "
                    f"(handling {type(exc).__name__}: {exc})"
                )
                raise StageError(self.name, short_repr(item), msg) from again
            if value is None and isinstance(policy, DropIfNone):
                return False, None
            return False, (value,)
        msg = f"{type(exc).__name__}: {exc}"
        raise StageError(self.name, short_repr(item), msg) from exc

    skipped = 0

    def _emit_checked(self, value: object, emit: Emit) -> None:
        if self._check_out is not None:
            self._check_out(value)
        emit(value)

    # -- one method per kind, chosen once in __init__ --

    def _map(self, item: object, emit: Emit) -> None:
        ok, value = self._call(item)
        if ok:
            self._emit_checked(value, emit)
        elif value is not None:
            self._emit_checked(value[0], emit)

    def _flat(self, item: object, emit: Emit) -> None:
        if self._fn is None:  # explode() with no function: the item is the iterable
            for value in cast("Iterable[object]", item):
                self._emit_checked(value, emit)
            return
        ok, value = self._call(item)
        if not ok:
            if value is not None:
                self._emit_checked(value[0], emit)
            return
        try:
            outputs = list(cast("Iterable[object]", value))
        except Exception as exc:  # a generator stage raising half-way fails the item
            ok, value = self._failed(item, exc)
            if value is not None:
                self._emit_checked(value[0], emit)
            return
        for out in outputs:
            self._emit_checked(out, emit)

    def _filter(self, item: object, emit: Emit) -> None:
        if self._fn is None:  # filter() with no function drops None
            if item is not None:
                emit(item)
            return
        ok, keep = self._call(item)
        if ok:
            if keep:
                emit(item)
        elif keep is not None:
            emit(keep[0])

    def _merge(self, item: object, emit: Emit) -> None:
        emit(item)

    def _batch(self, item: object, emit: Emit) -> None:
        if not self._buffer:
            self._started = time.monotonic()
        self._buffer.append(item)
        if len(self._buffer) >= self.op.size:
            self._emit_buffer(emit)

    def _temporal_batch(self, item: object, emit: Emit) -> None:
        self.poll(time.monotonic(), emit)
        if not self._buffer:
            self._started = time.monotonic()
        self._buffer.append(item)

    def _reduce(self, item: object, emit: Emit) -> None:
        fn = self._fn
        assert fn is not None
        try:
            self._acc = fn(item, self._acc)  # olympipe's order: reducer(item, accumulator)
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            raise StageError(self.name, short_repr(item), msg) from exc

    def _limit(self, item: object, emit: Emit) -> None:
        if self._seen < self.op.size:
            self._seen += 1
            emit(item)
        self.exhausted = self._seen >= self.op.size

    def _timeout(self, item: object, emit: Emit) -> None:
        now = time.monotonic()
        self.poll(now, emit)
        if not self.exhausted:
            self._last = now
            emit(item)

    def _emit_buffer(self, emit: Emit) -> None:
        batch, self._buffer = self._buffer, []
        self._emit_checked(batch, emit)

    # -- end of stream and idle time --

    def deadline(self) -> float | None:
        """The monotonic time at which ``poll`` has something to do, or None."""
        seconds = self.op.seconds
        if seconds is None or self.exhausted:
            return None
        if self.op.kind == "timeout":
            return self._last + seconds
        if self.op.kind in ("batch", "temporal_batch") and self._buffer:
            return self._started + seconds
        return None

    def poll(self, now: float, emit: Emit) -> None:
        """Time-based behaviour: flush a batch whose time is up, end an idle stream."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return
        if self.op.kind == "timeout":
            self.exhausted = True
        else:
            self._emit_buffer(emit)

    def flush(self, emit: Emit) -> None:
        """End of stream: emit what the node still holds."""
        if self.op.kind == "reduce":
            self._emit_checked(self._acc, emit)
        elif self._buffer and (self.op.kind == "temporal_batch" or self.op.keep_incomplete):
            self._emit_buffer(emit)
        self._buffer = []

    def close(self) -> None:
        """Once per worker at the end: a class stage's close()."""
        closer, self._closer = self._closer, None
        runner, self._runner = self._runner, None
        try:
            if closer is not None:
                closer()
        finally:
            if runner is not None:
                runner.close()


class _Failed:
    """An I/O stage's item that raised on every attempt (handled in order, by the worker)."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


# Kinds whose one output of an item keeps the item's key in a keyed graph (others number theirs).
ONE_TO_ONE: Final = frozenset({"map", "filter", "limit", "timeout", "merge"})


def number_outputs(
    pairs: list[tuple[tuple[Any, ...], Any]],
    each: list[list[Any]],
    kind: str,
    out: list[Any],
    keys: list[Any],
) -> None:
    """A keyed graph's outputs of ``(key, item)`` pairs, ``each`` item's outputs in turn: one
    output of a one-to-one stage keeps its item's key, others are numbered after it."""
    one_to_one = kind in ONE_TO_ONE
    for (key, _), outputs in zip(pairs, each, strict=True):
        out += outputs
        if len(outputs) == 1 and one_to_one:
            keys.append(key)
        else:
            keys += [(*key, j) for j in range(len(outputs))]


def count_items(items: list[Any], enveloped: bool) -> int:
    """How many items ``items`` holds for the run report: a journaled run's envelopes count
    the items inside them."""
    if not enveloped:
        return len(items)
    return sum(len(envelope[2]) for envelope in items)


def log_skipped(stage: str, count: int) -> None:
    """Say, in the caller's logging, how many items ``on_error="skip"`` dropped."""
    import logging

    logging.getLogger("olympipe_typed").warning(
        "stage %r skipped %d item(s) that raised (on_error='skip')", stage, count
    )


def label_of(fn: object) -> str:
    """A stage's default name: the function's or class's name."""
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def iter_outputs(op: Op, items: Iterable[object]) -> list[object]:
    """Run ``op`` over ``items`` in this thread (stage unit tests, ``Stage.__call__``)."""
    proc = op.open()
    out: list[object] = []
    try:
        for item in items:
            proc.process(item, out.append)
        proc.flush(out.append)
    finally:
        proc.close()
    return out
