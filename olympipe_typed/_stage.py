"""``Stage[In, Out]`` and the decorators that make stages; no process code.

The typing is the product here: mypy and pyright must both infer precise types
for every composition, without a plugin. Two places need care:

- ``batch(n)`` is generic in the item type, which only the *other* operand of
  ``>>`` knows. pyright does not solve a TypeVar from the other operand of an
  operator, so ``batch`` returns a non-generic ``Batch`` and ``>>`` has an
  overload for it that builds ``list[T]`` from its own ``T``.
- mypy ignores what a class decorator returns (python/mypy#3135): with
  ``@stage`` on a class, mypy sees ``Tokenizer(...)`` as an instance. So ``>>``
  accepts any callable by its ``__call__`` signature (``_Call``), which covers
  stages, such instances and plain functions alike.
"""

# The decorators' overloads overlap on purpose (a class before any callable, a partial and a list
# before any iterable): the first match is the precise one.
# mypy: disable-error-code="overload-overlap"

from __future__ import annotations

import sys
import typing
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    Never,
    ParamSpec,
    Protocol,
    cast,
    final,
    overload,
)

if TYPE_CHECKING or sys.version_info >= (3, 13):
    # PEP 696 defaults (Call_co) and @deprecated: in typing and warnings from 3.13 on.
    from typing_extensions import TypeVar, deprecated
else:
    # At run time on 3.11 and 3.12 both are kept out of ``import olympipe_typed``: typing_extensions
    # imports inspect (about 11 ms of a 50 ms start-up). ``deprecated`` only marks overloads, which
    # never run, and Stage fills in Call's default itself (Stage.__class_getitem__).
    def TypeVar(name: str, *constraints: Any, default: Any = None, **options: Any) -> Any:
        # A bound given as a string would be compiled at import (the process's first compile()
        # costs about 1 ms); bounds are the checkers' business.
        if isinstance(options.get("bound"), str):
            del options["bound"]
        return typing.TypeVar(name, *constraints, **options)

    def deprecated(message: str, /) -> Callable[[T], T]:
        return lambda fn: fn


from ._hints import UNKNOWN, callable_hints, element_hint, narrowed_hint
from ._ops import (
    ClassSpec,
    ErrorPolicy,
    Kind,
    Op,
    Options,
    check_int,
    check_seconds,
    iter_outputs,
    label_of,
)
from ._template import Chain, Fan, Leaf, Template, chain, describe, fan, leaves, with_options

if TYPE_CHECKING:
    import functools
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Coroutine,
        Iterable,
        Iterator,
        Mapping,
    )
    from typing import TypeGuard

    from typing_extensions import TypeIs

# A stage that accepts Base accepts Derived; one that yields Derived can stand in for Base.
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)
# What calling the stage directly returns: the function's own result. That is the output for a
# map stage (hence the default), the iterable for a flat stage, the bool for a filter.
Call_co = TypeVar("Call_co", covariant=True, default=Out_co)
# The class a class-stage factory was made from (type[Scaler]) and the stage kind it makes.
K_co = TypeVar("K_co", covariant=True)
Kind_co = TypeVar("Kind_co", bound=Literal["map", "flat"], covariant=True)
A = TypeVar("A")
B = TypeVar("B")
R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")

# mypy reads a partial's parameters as (*Any, **Any), so stage(partial(f, k=v)) would be a
# Stage[Any, ...] that takes wrong items. Both checkers type it Stage[Never, ...] (every use is
# an error) and point to partial_stage, whose Concatenate keeps the item type.
_PARTIAL = "stage(functools.partial(fn, ...)) has no item type; use partial_stage(fn, ...)"

__all__ = [
    "Batch",
    "ClassStageFactory",
    "FilterStageDecorator",
    "FlatStageDecorator",
    "Stage",
    "StageDecorator",
    "batch",
    "filter_stage",
    "flat_stage",
    "partial_stage",
    "stage",
]


class _Call(Protocol[In_contra, Out_co]):
    """Anything called with one item: a Stage, a function, a class-stage instance."""

    def __call__(self, item: In_contra, /) -> Out_co: ...


class _FlatCall(Protocol[In_contra, Out_co]):
    def __call__(self, item: In_contra, /) -> Iterable[Out_co]: ...


# Classes are told from functions by type[...], so a function whose result is itself callable
# (a closure, a model object) is a function stage, never a class-stage factory.
_MapClass = TypeVar("_MapClass", bound="type[_Call[Any, Any]]")
_FlatClass = TypeVar("_FlatClass", bound="type[_FlatCall[Any, Any]]")
# Class stages whose __call__ is async: a coroutine of an iterable, or an async generator.
_AsyncFlatClass = TypeVar(
    "_AsyncFlatClass",
    bound="type[_Call[Any, Coroutine[Any, Any, Iterable[Any]]]] | type[_Call[Any, AsyncIterator[Any]]]",
)


@final
class Stage(Generic[In_contra, Out_co, Call_co]):
    """A reusable, typed step of a pipeline: takes ``In`` items, produces ``Out`` items.

    A stage is a template: building a pipeline from it starts nothing, and the same
    stage may appear in many pipelines. Calling it calls the underlying function, and
    ``Call`` (the third type argument, ``Out`` unless given) is what that returns: the
    iterable of a flat stage, the bool of a filter.

    >>> @stage
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> double(21)
    42
    >>> (double >> double)(1)
    4
    """

    __slots__ = ("_instance", "_template")

    if not TYPE_CHECKING and sys.version_info < (3, 13):

        def __class_getitem__(cls, params: object) -> object:
            # Call's default (Out) at run time, where typing.TypeVar has no ``default=``:
            # Stage[int, str] is Stage[int, str, str], as it is on 3.13.
            if isinstance(params, tuple) and len(params) == 2:
                params = (*params, params[1])
            return super().__class_getitem__(params)

    def __init__(self, template: Template, /) -> None:
        self._template = template
        self._instance: Callable[[object], object] | None = None

    # -- composition --

    @overload
    def __rshift__(self, other: Batch, /) -> Stage[In_contra, list[Out_co]]: ...
    @overload  # a Stage by its In and Out, not by what calling it directly returns
    def __rshift__(self, other: Stage[Out_co, R, object], /) -> Stage[In_contra, R]: ...
    @overload
    def __rshift__(self, other: _Call[Out_co, R], /) -> Stage[In_contra, R]: ...
    def __rshift__(self, other: object, /) -> Stage[Any, object]:
        return Stage(chain(self._template, as_template(other)))

    @overload
    def __or__(self, other: Stage[In_contra, R, object], /) -> Stage[In_contra, Out_co | R]: ...
    @overload
    def __or__(self, other: _Call[In_contra, R], /) -> Stage[In_contra, Out_co | R]: ...
    def __or__(self, other: object, /) -> Stage[Any, object]:
        """Fan-out: every item goes to both; per input, this stage's outputs then ``other``'s."""
        return Stage(fan(self._template, as_template(other)))

    # A stage is contravariant in its input, so ``audit | encode`` with a wider left input
    # (Stage[object, str] | Stage[Image, bytes]) is a fan-out over the narrower one. The
    # checkers try this when __or__ above does not apply; at run time it also serves
    # ``plain_function | stage``.
    @overload
    def __ror__(self, other: Stage[In_contra, R, object], /) -> Stage[In_contra, R | Out_co]: ...
    @overload
    def __ror__(self, other: _Call[In_contra, R], /) -> Stage[In_contra, R | Out_co]: ...
    def __ror__(self, other: object, /) -> Stage[Any, object]:
        return Stage(fan(as_template(other), self._template))

    # -- use --

    def __call__(self, item: In_contra, /) -> Call_co:
        """Call the underlying function on one item (a class stage builds its instance once)."""
        t = self._template
        if isinstance(t, Leaf) and t.op.fn is not None and t.op.kind in ("map", "flat", "filter"):
            if self._instance is None:
                fn = t.op.fn
                self._instance = fn.build()[0] if isinstance(fn, ClassSpec) else fn
            result = self._instance(item)
            waited = t.op.async_kind
            if waited is not None:  # an async stage called directly: run to its end
                from ._aio import collect, run_sync

                awaited = cast("AsyncIterator[object] | Awaitable[object]", result)
                result = run_sync(
                    collect(cast("AsyncIterator[object]", awaited))
                    if waited == "asyncgen"
                    else cast("Awaitable[object]", awaited)
                )
            return cast("Call_co", result)
        outputs = iter_outputs_template(t, item)
        if len(outputs) != 1:
            msg = (
                f"calling stage {describe(t)!r} on one item produced {len(outputs)} items; "
                "call it only where each item gives exactly one output, or run it in a pipeline"
            )
            raise TypeError(msg)
        return cast("Call_co", outputs[0])

    def options(
        self,
        *,
        name: str | None = None,
        workers: int | None = None,
        ordered: bool | None = None,
        queue_size: int | None = None,
        on_error: Literal["raise", "skip", "collect"]
        | Callable[[In_contra, Exception], Out_co]
        | None = None,
        retries: int | None = None,
        resources: Mapping[str, float] | None = None,
        item_timeout: float | None = None,
        max_items_per_worker: int | None = None,
        concurrency: int | None = None,
        rate: float | None = None,
    ) -> Stage[In_contra, Out_co, Call_co]:
        """A copy of this stage with other options, keeping its type (as Ray's ``.options()``).

        >>> slow = stage(str.upper).options(workers=4, name="upper")
        >>> slow.name, slow.workers
        ('upper', 4)
        """
        given: dict[str, object] = {
            "name": name,
            "workers": workers,
            "ordered": ordered,
            "queue_size": queue_size,
            "on_error": on_error,
            "retries": retries,
            "resources": resources,
            "item_timeout": item_timeout,
            "max_items_per_worker": max_items_per_worker,
            "concurrency": concurrency,
            "rate": rate,
        }
        changes = {k: v for k, v in given.items() if v is not None}
        if "name" in changes and not isinstance(self._template, Leaf):
            msg = f"name= applies to a single stage, not to the composite {self.name!r}"
            raise ValueError(msg)
        if changes.get("workers", 1) not in (1, None):
            stateful = [op.name for op in leaves(self._template) if op.stateful]
            if stateful:
                msg = f"workers must be 1 for the stateful stage {stateful[0]!r} (got {workers!r})"
                raise ValueError(msg)
        return Stage(with_options(self._template, changes))

    @property
    def name(self) -> str:
        """The stage's name; for a composite, its stages' names joined by ``>>`` and ``|``."""
        return describe(self._template)

    @property
    def workers(self) -> int:
        """Worker count of a single stage as written (the largest one for a composite); 1
        where no stage says (``workers=None``: the planner chooses at run time)."""
        return max(op.options.workers or 1 for op in leaves(self._template))

    def __repr__(self) -> str:
        return f"Stage({self.name})"

    def __getstate__(self) -> Template:
        return self._template

    def __setstate__(self, state: Template) -> None:
        self._template = state
        self._instance = None


@final
class Batch:
    """``batch(n)``: behaves as ``Stage[T, list[T]]`` for whatever ``T`` it is wired after.

    >>> from olympipe_typed import source
    >>> (source(range(5)) >> batch(2)).run(backend="inline")
    [[0, 1], [2, 3], [4]]
    """

    __slots__ = ("_template",)

    def __init__(self, template: Leaf, /) -> None:
        self._template = template

    @overload
    def __rshift__(self, other: Stage[list[T], R, object], /) -> Stage[T, R]: ...
    @overload
    def __rshift__(self, other: _Call[list[T], R], /) -> Stage[T, R]: ...
    def __rshift__(self, other: object, /) -> Stage[Any, object]:
        return Stage(chain(self._template, as_template(other)))

    @property
    def name(self) -> str:
        return describe(self._template)

    def __repr__(self) -> str:
        return f"Batch({self._template.op.size})"


def as_template(obj: object) -> Template:
    """The template behind a Stage, a Batch, or a plain callable (wrapped as a map stage)."""
    if isinstance(obj, Stage | Batch):
        return obj._template
    if callable(obj):
        return Leaf(make_op("map", obj, Options()))
    msg = f"expected a Stage, batch(...) or a callable, got {type(obj).__qualname__}"
    raise TypeError(msg)


def iter_outputs_template(t: Template, item: object) -> list[object]:
    """All outputs of template ``t`` for one input item, computed in this thread."""
    if isinstance(t, Leaf):
        return iter_outputs(t.op, [item])
    if isinstance(t, Chain):
        items = [item]
        for part in t.parts:
            items = [out for x in items for out in iter_outputs_template(part, x)]
        return items
    assert isinstance(t, Fan)
    return [out for b in t.branches for out in iter_outputs_template(b, item)]


def make_op(kind: Kind, fn: Callable[..., object] | ClassSpec, options: Options) -> Op:
    target = fn.cls if isinstance(fn, ClassSpec) else fn
    if isinstance(fn, ClassSpec):  # the item arrives at the method, after the instance
        method = getattr(fn.cls, fn.method, None) if isinstance(fn.method, str) else fn.method
        hint_in, hint_out = callable_hints(method, skip_first=True) if method else (UNKNOWN,) * 2
    else:
        hint_in, hint_out = callable_hints(target)
    if kind == "flat":
        hint_out = element_hint(hint_out)
    elif kind == "filter":
        hint_out = narrowed_hint(hint_out)
    label = label_of(target)
    if isinstance(fn, ClassSpec) and fn.method != "__call__":
        label = f"{label}.{label_of(fn.method) if callable(fn.method) else fn.method}"
    op = Op(kind, fn, options, label=label, in_hint=hint_in, out_hint=hint_out)
    if op.waits and op.isolated:
        msg = (
            f"stage {op.name!r}: item_timeout and max_items_per_worker do not combine with an "
            "async function, concurrency= or rate= (time an awaited call with asyncio.timeout)"
        )
        raise ValueError(msg)
    return op


@final
class ClassStageFactory(Generic[K_co, Kind_co]):
    """``stage(Cls)``: calling it with ``Cls``'s init arguments gives a Stage.

    The instance is not built here: each worker builds its own, once.
    """

    __slots__ = ("_cls", "_kind", "_options")
    _kind: Kind
    _cls: type
    _options: Options

    def __init__(self, kind: Kind, cls: type, options: Options) -> None:
        self._kind = kind
        self._cls = cls
        self._options = options
        # Check at decoration time that instances will be callable with an item.
        if "__call__" not in {name for klass in cls.__mro__[:-1] for name in vars(klass)}:
            msg = f"a class stage needs a __call__(self, item) method ({cls.__qualname__} has none)"
            raise TypeError(msg)

    @overload
    def __call__(
        self: ClassStageFactory[Callable[P, _Call[A, Coroutine[Any, Any, B]]], Literal["map"]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Stage[A, B]: ...
    @overload
    def __call__(
        self: ClassStageFactory[Callable[P, _Call[A, B]], Literal["map"]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Stage[A, B]: ...
    @overload
    def __call__(
        self: ClassStageFactory[Callable[P, _FlatCall[A, B]], Literal["flat"]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Stage[A, B, Iterable[B]]: ...
    @overload
    def __call__(
        self: ClassStageFactory[
            Callable[P, _Call[A, Coroutine[Any, Any, Iterable[B]]]], Literal["flat"]
        ],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Stage[A, B, list[B]]: ...
    @overload
    def __call__(
        self: ClassStageFactory[Callable[P, _Call[A, AsyncIterator[B]]], Literal["flat"]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Stage[A, B, list[B]]: ...
    def __call__(self, /, *args: Any, **kwargs: Any) -> Stage[Any, Any, Any]:
        import inspect

        try:
            inspect.signature(self._cls).bind(*args, **kwargs)
        except TypeError as exc:
            msg = f"stage {self._cls.__qualname__}: {exc}"
            raise TypeError(msg) from None
        spec = ClassSpec(self._cls, args, kwargs)
        return Stage(Leaf(make_op(self._kind, spec, self._options)))

    def __repr__(self) -> str:
        return f"stage({self._cls.__qualname__})"


class _Decorator:
    """What ``stage(...)``, ``flat_stage(...)`` and ``filter_stage(...)`` return with options."""

    __slots__ = ("_kind", "_options")
    _kind: Kind
    _options: Options

    def __init__(self, kind: Kind, options: Options) -> None:
        self._kind = kind
        self._options = options

    def _apply(self, fn: object) -> Any:
        if isinstance(fn, Stage | Batch):
            msg = f"{fn!r} is already a stage; use .options(...) to change its options"
            raise TypeError(msg)
        cls = _class_of(fn)
        if cls is not None:
            return ClassStageFactory[Any, Any](self._kind, cls, self._options)
        if not callable(fn):
            msg = f"a stage is made from a function or a class, not {type(fn).__qualname__}"
            raise TypeError(msg)
        stage_: Stage[Any, Any] = Stage(Leaf(make_op(self._kind, fn, self._options)))
        return stage_


@final
class StageDecorator(_Decorator):
    """``@stage(workers=4)``: applied to a function or a class."""

    __slots__ = ()

    @overload
    def __call__(self, fn: _MapClass, /) -> ClassStageFactory[_MapClass, Literal["map"]]: ...  # pyright: ignore[reportOverlappingOverload]
    @overload
    @deprecated(_PARTIAL)
    def __call__(self, fn: functools.partial[B], /) -> Stage[Never, B]: ...
    @overload
    def __call__(self, fn: Callable[[A], Coroutine[Any, Any, B]], /) -> Stage[A, B]: ...
    @overload
    def __call__(self, fn: Callable[[A], B], /) -> Stage[A, B]: ...
    def __call__(self, fn: object, /) -> object:
        return self._apply(fn)


@final
class FlatStageDecorator(_Decorator):
    """``@flat_stage(workers=2)``: applied to a function or a class."""

    __slots__ = ()

    @overload
    def __call__(self, fn: _FlatClass, /) -> ClassStageFactory[_FlatClass, Literal["flat"]]: ...
    @overload
    def __call__(
        self, fn: _AsyncFlatClass, /
    ) -> ClassStageFactory[_AsyncFlatClass, Literal["flat"]]: ...
    @overload
    @deprecated(_PARTIAL)
    def __call__(self, fn: functools.partial[Iterable[B]], /) -> Stage[Never, B, Never]: ...
    @overload
    def __call__(self, fn: Callable[[A], AsyncIterator[B]], /) -> Stage[A, B, list[B]]: ...
    @overload
    def __call__(
        self, fn: Callable[[A], Coroutine[Any, Any, Iterable[B]]], /
    ) -> Stage[A, B, list[B]]: ...
    @overload
    def __call__(self, fn: Callable[[A], list[B]], /) -> Stage[A, B, list[B]]: ...
    @overload
    def __call__(self, fn: Callable[[A], Iterator[B]], /) -> Stage[A, B, Iterator[B]]: ...
    @overload
    def __call__(self, fn: Callable[[A], Iterable[B]], /) -> Stage[A, B, Iterable[B]]: ...
    def __call__(self, fn: object, /) -> object:
        return self._apply(fn)


@final
class FilterStageDecorator(_Decorator):
    """``@filter_stage(name="valid")``: applied to a predicate."""

    __slots__ = ()

    @overload
    @deprecated(_PARTIAL)
    def __call__(self, fn: functools.partial[bool], /) -> Stage[Never, Never, Never]: ...
    @overload
    def __call__(self, fn: Callable[[A], TypeIs[B]], /) -> Stage[A, B, bool]: ...
    @overload
    def __call__(self, fn: Callable[[A], TypeGuard[B]], /) -> Stage[A, B, bool]: ...
    @overload
    def __call__(self, fn: Callable[[A], Coroutine[Any, Any, bool]], /) -> Stage[A, A, bool]: ...
    @overload
    def __call__(self, fn: Callable[[A], bool], /) -> Stage[A, A, bool]: ...
    def __call__(self, fn: object, /) -> object:
        return self._apply(fn)


def _options(
    name: str | None,
    workers: int | None,
    ordered: bool,
    queue_size: int | None,
    on_error: ErrorPolicy,
    retries: int,
    resources: Mapping[str, float] | None,
    item_timeout: float | None = None,
    max_items_per_worker: int | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
) -> Options:
    return Options(
        name,
        workers,
        ordered,
        queue_size,
        on_error,
        retries,
        resources,
        item_timeout,
        max_items_per_worker,
        concurrency,
        rate,
    )


@overload
def stage(fn: _MapClass, /) -> ClassStageFactory[_MapClass, Literal["map"]]: ...  # pyright: ignore[reportOverlappingOverload]
@overload
@deprecated(_PARTIAL)
def stage(fn: functools.partial[B], /) -> Stage[Never, B]: ...
@overload
def stage(fn: Callable[[A], Coroutine[Any, Any, B]], /) -> Stage[A, B]: ...
@overload
def stage(fn: Callable[[A], B], /) -> Stage[A, B]: ...
@overload
def stage(
    *,
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
) -> StageDecorator: ...
def stage(
    fn: object = None,
    /,
    *,
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
) -> object:
    """Make a map stage (one output per input) from a function or a class.

    Used bare (``@stage``) or with options (``@stage(workers=4)``). On a class
    with ``__call__(self, item)``, gives a factory: ``stage(Cls)(*init_args)``
    is a stage whose instance is built once per worker, inside the worker, and
    whose ``close()`` (if any) runs once per worker at the end.

    >>> @stage(name="inc")
    ... def increment(x: int) -> int:
    ...     return x + 1
    >>> increment.name, increment(1)
    ('inc', 2)
    """
    deco = StageDecorator(
        "map",
        _options(
            name,
            workers,
            ordered,
            queue_size,
            on_error,
            retries,
            resources,
            item_timeout,
            max_items_per_worker,
            concurrency,
            rate,
        ),
    )
    return deco if fn is None else deco._apply(fn)


@overload
def flat_stage(fn: _FlatClass, /) -> ClassStageFactory[_FlatClass, Literal["flat"]]: ...
@overload
def flat_stage(fn: _AsyncFlatClass, /) -> ClassStageFactory[_AsyncFlatClass, Literal["flat"]]: ...
@overload
@deprecated(_PARTIAL)
def flat_stage(fn: functools.partial[Iterable[B]], /) -> Stage[Never, B, Never]: ...
@overload
def flat_stage(fn: Callable[[A], AsyncIterator[B]], /) -> Stage[A, B, list[B]]: ...
@overload
def flat_stage(fn: Callable[[A], Coroutine[Any, Any, Iterable[B]]], /) -> Stage[A, B, list[B]]: ...
@overload
def flat_stage(fn: Callable[[A], list[B]], /) -> Stage[A, B, list[B]]: ...
@overload
def flat_stage(fn: Callable[[A], Iterator[B]], /) -> Stage[A, B, Iterator[B]]: ...
@overload
def flat_stage(fn: Callable[[A], Iterable[B]], /) -> Stage[A, B, Iterable[B]]: ...
@overload
def flat_stage(
    *,
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
) -> FlatStageDecorator: ...
def flat_stage(
    fn: object = None,
    /,
    *,
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
) -> object:
    """Make a stage with 0..n outputs per input, in order, from a function returning an iterable.

    >>> from olympipe_typed import source
    >>> @flat_stage
    ... def words(line: str) -> list[str]:
    ...     return line.split()
    >>> (source(["a b", "", "c"]) >> words).run(backend="inline")
    ['a', 'b', 'c']
    """
    opts = _options(
        name,
        workers,
        ordered,
        queue_size,
        on_error,
        retries,
        resources,
        item_timeout,
        max_items_per_worker,
        concurrency,
        rate,
    )
    deco = FlatStageDecorator("flat", opts)
    return deco if fn is None else deco._apply(fn)


@overload
@deprecated(_PARTIAL)
def filter_stage(fn: functools.partial[bool], /) -> Stage[Never, Never, Never]: ...
@overload
def filter_stage(fn: Callable[[A], TypeIs[B]], /) -> Stage[A, B, bool]: ...
@overload
def filter_stage(fn: Callable[[A], TypeGuard[B]], /) -> Stage[A, B, bool]: ...
@overload
def filter_stage(fn: Callable[[A], Coroutine[Any, Any, bool]], /) -> Stage[A, A, bool]: ...
@overload
def filter_stage(fn: Callable[[A], bool], /) -> Stage[A, A, bool]: ...
@overload
def filter_stage(
    *,
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
) -> FilterStageDecorator: ...
def filter_stage(
    fn: object = None,
    /,
    *,
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
) -> object:
    """Make a stage that keeps the items for which a predicate is true.

    >>> from olympipe_typed import source
    >>> @filter_stage
    ... def even(x: int) -> bool:
    ...     return x % 2 == 0
    >>> (source(range(6)) >> even).run(backend="inline")
    [0, 2, 4]
    """
    opts = _options(
        name,
        workers,
        ordered,
        queue_size,
        on_error,
        retries,
        resources,
        item_timeout,
        max_items_per_worker,
        concurrency,
        rate,
    )
    deco = FilterStageDecorator("filter", opts)
    return deco if fn is None else deco._apply(fn)


def batch(
    n: int, timeout: float | None = None, *, name: str | None = None, queue_size: int | None = None
) -> Batch:
    """Group items into lists of ``n``; the last group may be shorter.

    ``timeout`` (seconds) flushes a partial group once its first item has waited
    that long, so a slow source still sees its items promptly. Behaves as
    ``Stage[T, list[T]]`` for the ``T`` it is wired after.

    >>> from olympipe_typed import source
    >>> (source("abcde") >> batch(2)).run(backend="inline")
    [['a', 'b'], ['c', 'd'], ['e']]
    """
    check_int("n", n, 1)
    if timeout is not None:
        check_seconds("timeout", timeout)
    options = Options(name=name, queue_size=queue_size)
    return Batch(Leaf(Op("batch", None, options, label=f"batch({n})", size=n, seconds=timeout)))


@final
class _BoundTail:
    """``fn`` with every parameter but the first bound: what ``partial_stage`` runs."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(
        self, fn: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
    ) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __call__(self, item: object, /) -> object:
        return self.fn(item, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"partial_stage({label_of(self.fn)})"


def partial_stage(
    fn: Callable[Concatenate[A, P], B], /, *args: P.args, **kwargs: P.kwargs
) -> Stage[A, B]:
    """A map stage of ``fn`` with every parameter but the first (the item) bound here.

    The typed form of ``stage(functools.partial(fn, ...))``: the arguments are checked
    against ``fn`` and the item type is ``fn``'s first parameter's, for both checkers.

    >>> def scale(x: float, factor: float) -> float:
    ...     return x * factor
    >>> partial_stage(scale, factor=2.0)(1.5)
    3.0
    """
    bound = _BoundTail(fn, args, kwargs)
    hints = callable_hints(fn)
    op = make_op("map", bound, Options())
    return Stage(Leaf(op.replace(label=label_of(fn), in_hint=hints[0], out_hint=hints[1])))


def _class_of(fn: object) -> type | None:
    """The class behind ``fn`` if it is one (``Echo`` or a specialised ``Echo[int]``), else None."""
    if isinstance(fn, type):
        return fn
    origin = getattr(fn, "__origin__", None)
    return origin if isinstance(origin, type) and callable(fn) else None
