"""olympipe's ``olympipe.registry``: the functions and classes its decorators mark, by name.

Nothing here runs them; it is a catalogue a program can read (a CLI listing its steps, say).
"""

from collections.abc import Callable
from typing import Any

__all__ = [
    "clear_registry",
    "register_class_task",
    "register_filter",
    "register_source",
    "register_splitter",
    "register_task",
]

_sources: dict[str, Callable[..., Any]] = {}
_tasks: dict[str, Callable[..., Any]] = {}
_filters: dict[str, Callable[..., Any]] = {}
_class_tasks: dict[str, dict[str, Any]] = {}
_splitters: dict[str, Callable[..., Any]] = {}


def _name(fn: object, name: str | None) -> str:
    return name or str(getattr(fn, "__name__", repr(fn)))


def register_source(fn: Callable[..., Any], name: str | None = None) -> None:
    _sources[_name(fn, name)] = fn


def register_task(fn: Callable[..., Any], name: str | None = None) -> None:
    _tasks[_name(fn, name)] = fn


def register_filter(fn: Callable[..., Any], name: str | None = None) -> None:
    _filters[_name(fn, name)] = fn


def register_class_task(
    cls: type[Any], method: str, close: str | None = None, name: str | None = None
) -> None:
    _class_tasks[_name(cls, name)] = {"class": cls, "method": method, "close": close}


def register_splitter(fn: Callable[..., Any], name: str | None = None) -> None:
    _splitters[_name(fn, name)] = fn


def clear_registry() -> None:
    """Forget everything registered."""
    for table in (_sources, _tasks, _filters, _class_tasks, _splitters):
        table.clear()
