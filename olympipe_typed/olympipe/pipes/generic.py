"""olympipe's ``GenericPipe``: the base class of a step, and how ``create_pipe`` adds one.

In olympipe each step is a process class. A program extends it by subclassing
``GenericPipe`` and overriding ``_perform_task(data)``, and adds the step with
``pipeline.create_pipe(MyPipe, count=n, **kwargs)``. The same works here: each of the
step's workers builds one ``MyPipe(**kwargs)`` (with olympipe's ``father_process_dag``,
``source``, ``target`` set to None and ``auto_start=False``), inside the worker, and calls
its ``_perform_task`` on every item; returning ``_SKIP`` sends nothing on. The built-in
step classes (``TaskPipe``, ``BatchPipe``, ...) add the matching ``Pipeline`` method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, cast

from ..._ops import ClassSpec, Op, Options, check_int
from ..types import InPacket, OutPacket

if TYPE_CHECKING:
    from ..._pipeline import Pipeline

__all__ = ["GenericPipe", "step_of"]


class _Skip:
    """The type of ``_SKIP``; a copy unpickled anywhere is ``_SKIP`` itself."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_SKIP"

    def __repr__(self) -> str:
        return "_SKIP"


_SKIP: Any = _Skip()
"""Returned by ``_perform_task``: send nothing on for this item."""


class GenericPipe(Generic[InPacket, OutPacket]):
    """A step built once per worker; ``_perform_task`` handles one item.

    The constructor takes olympipe's parameters; the queues and the process graph they
    name are the engine's business here, so they are None when the engine builds a step.
    """

    # The Pipeline method a built-in step stands for (None: a user's step, built per worker).
    _method: ClassVar[str | None] = None

    def __init__(
        self,
        father_process_dag: object = None,
        source: object = None,
        target: object = None,
        auto_start: bool = False,
    ) -> None:
        self._father_process_dag = father_process_dag
        self._source_queue = source
        self._target_queue = target

    @property
    def shortname(self) -> str:
        return type(self).__name__

    def _perform_task(self, data: InPacket) -> OutPacket:
        return cast("OutPacket", data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{self.shortname}]"


def _outputs(pipe: GenericPipe[Any, Any], data: object) -> list[object]:
    """One item through a user's step: what goes on (nothing for ``_SKIP``)."""
    result = pipe._perform_task(data)
    return [] if isinstance(result, _Skip) else [result]


def step_of(
    pipeline: Pipeline[Any], pipe_class: type[GenericPipe[Any, Any]], kwargs: dict[str, Any]
) -> Pipeline[Any] | Op:
    """``create_pipe``'s work: the built-in step's method, or an Op that builds the step."""
    given = cast("object", pipe_class)  # for callers the checkers do not see
    if not (isinstance(given, type) and issubclass(given, GenericPipe)):
        msg = f"create_pipe takes a subclass of GenericPipe (got {pipe_class!r})"
        raise TypeError(msg)
    kwargs = dict(kwargs)
    count = kwargs.pop("count", 1)
    check_int("count", count, 1)
    method = pipe_class.__dict__.get("_method")
    if method in ("gather", "split"):
        msg = f"{pipe_class.__name__} is added by Pipeline.{method}(...), not by create_pipe"
        raise TypeError(msg)
    if method is not None:
        return cast("Pipeline[Any]", getattr(pipeline, method)(**kwargs))
    base = next(c for c in pipe_class.__mro__ if c is GenericPipe or "_method" in c.__dict__)
    if base is not GenericPipe and base.__dict__["_method"] != "task":
        msg = (
            f"{pipe_class.__qualname__} extends {base.__qualname__}, whose work is not "
            "_perform_task here: extend GenericPipe or TaskPipe"
        )
        raise TypeError(msg)
    olympipe_args = {"father_process_dag": None, "source": None, "target": None}
    spec = ClassSpec(
        pipe_class, (), {**olympipe_args, "auto_start": False, **kwargs}, _outputs, None
    )
    return Op("flat", spec, Options(workers=count), label=pipe_class.__name__)
