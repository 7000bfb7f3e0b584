"""olympipe's ``olympipe.decorators``: mark functions and classes as steps (``registry``).

Each returns what it was given, unchanged: a marked function is used in a pipeline as any
other (``Pipeline(data).task(fn)``).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from . import registry as _reg

__all__ = ["class_task", "filter", "source", "source_from", "splitter", "task"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
I = TypeVar("I", bound=Iterable[Any])  # noqa: E741


def source(fn: F) -> F:
    """Mark a generator function as a pipeline source."""
    _reg.register_source(fn)
    return fn


def source_from(iterable: I, name: str | None = None) -> I:
    """Register any iterable (list, range, generator) as a source; return it unchanged."""
    label = name or getattr(iterable, "__name__", None) or f"source_{id(iterable)}"

    def _items() -> Iterator[Any]:
        yield from iterable

    _items.__name__ = _items.__qualname__ = label
    _reg.register_source(_items)
    return iterable


def task(fn: F) -> F:
    """Mark a transformation function."""
    _reg.register_task(fn)
    return fn


def filter(fn: F) -> F:  # noqa: A001 - olympipe's name
    """Mark a filter function. Raises TypeError when its return annotation is not ``bool``."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations that do not resolve here: nothing to check
        hints = {}
    ret = hints.get("return", bool)
    if ret is not bool:
        name = getattr(fn, "__name__", repr(fn))
        msg = f"@filter: {name!r} must return bool, not {getattr(ret, '__name__', ret)}"
        raise TypeError(msg)
    _reg.register_filter(fn)
    return fn


def splitter(fn: F) -> F:
    """Mark a routing function: it returns one slot per branch, ``None`` where an item
    goes nowhere (``pipeline.split(fn)``)."""
    _reg.register_splitter(fn)
    return fn


def class_task(method: str, close: str | None = None, name: str | None = None) -> Callable[[C], C]:
    """Mark a class for ``class_task`` steps: ``method`` handles an item, ``close`` ends."""

    def decorator(cls: C) -> C:
        _reg.register_class_task(cls, method=method, close=close, name=name)
        return cls

    return decorator
