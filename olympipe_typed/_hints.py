"""Type hints of stage functions: reading them, checking edges, checking items.

beartype is imported only when a check actually runs (it costs ~90 ms at import,
see PEERS.md), so building or running a graph without checks never pays for it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, cast, final

from ._errors import StageTypeError, WiringError


@final
class _Unknown:
    """The hint of an unannotated parameter or result: fits anything."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unannotated>"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
_CO_VARARGS: Final = 0x04  # inspect.CO_VARARGS, without importing inspect

_ITERABLES: Final = (Iterable, Iterator, typing.Generator, list, tuple, set, frozenset)


def callable_hints(fn: Callable[..., object], *, skip_first: bool = False) -> tuple[object, object]:
    """Return (first parameter hint, return hint) of ``fn``, UNKNOWN where unannotated.

    String annotations (``from __future__ import annotations``) are resolved in
    the function's globals; an annotation that cannot be resolved counts as UNKNOWN.
    """
    is_class = isinstance(fn, type)
    target: object = fn
    if isinstance(fn, type):
        target = fn.__call__  # a class's items arrive at __call__
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    first = _first_parameter(target, skip_self=is_class, skip_first=skip_first)
    return hints.get(first, UNKNOWN) if first else UNKNOWN, hints.get("return", UNKNOWN)


def _first_parameter(fn: object, *, skip_self: bool, skip_first: bool = False) -> str | None:
    """The name of the parameter an item arrives in, if there is one."""
    code = getattr(fn, "__code__", None)
    if type(fn) is types.FunctionType and code is not None:  # plain functions: no inspect
        names = list(code.co_varnames[: code.co_argcount])
        if code.co_flags & _CO_VARARGS:  # *args: items arrive there when nothing comes before
            names.append(code.co_varnames[code.co_argcount + code.co_kwonlyargcount])
        if (skip_first or (skip_self and names[:1] == ["self"])) and names:
            names = names[1:]
        return names[0] if names else None
    import inspect  # methods, partials, builtins, callable objects

    try:
        params = list(inspect.signature(cast("Any", fn)).parameters.values())
    except (TypeError, ValueError):
        return None
    if params and (skip_first or (skip_self and params[0].name == "self")):
        params = params[1:]
    return params[0].name if params else None


def element_hint(hint: object) -> object:
    """The item type of an ``Iterable[X]``-like hint (a flat stage's result), else UNKNOWN."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is None or not args:
        return UNKNOWN
    try:
        if origin in _ITERABLES or (
            isinstance(origin, type) and issubclass(origin, Iterable) and origin is not dict
        ):
            return args[0]
    except TypeError:
        return UNKNOWN
    return UNKNOWN


def narrowed_hint(hint: object) -> object:
    """What a filter lets through: ``X`` for a ``TypeIs[X]`` or ``TypeGuard[X]`` predicate."""
    origin = typing.get_origin(hint)
    name = getattr(origin, "_name", None) or getattr(origin, "__name__", "")
    if name in ("TypeIs", "TypeGuard") and typing.get_args(hint):
        return typing.get_args(hint)[0]
    return UNKNOWN


def list_of(hint: object) -> object:
    """``list[hint]``, or UNKNOWN when ``hint`` is."""
    if hint is UNKNOWN:
        return UNKNOWN
    generic: Any = list
    return generic[hint]


def union_of(hints: Iterable[object]) -> object:
    """The union of several hints; UNKNOWN if any of them is."""
    members = list(hints)
    if not members or any(h is UNKNOWN for h in members):
        return UNKNOWN
    result: Any = members[0]
    for h in members[1:]:
        result = result if result == h else result | h
    return result


def _is_open(hint: object) -> bool:
    """True for hints that accept or produce anything: Any, object, TypeVars, UNKNOWN."""
    if hint is UNKNOWN or hint is typing.Any or hint is object or isinstance(hint, typing.TypeVar):
        return True
    return any(_is_open(a) for a in typing.get_args(hint) if not isinstance(a, list))


# PEP 484's numeric tower: mypy accepts an int where a float is expected, beartype does not.
_TOWER: Final[dict[object, object]] = {float: float | int, complex: complex | float | int}


def _widen(hint: object) -> object:
    """``hint`` with float and complex widened as PEP 484 reads them, recursively."""
    if hint in _TOWER:
        return _TOWER[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or not args:
        return hint
    try:
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            return union_of(_widen(a) for a in args)
        generic: Any = hint if hasattr(hint, "__getitem__") else origin
        return generic[tuple(_widen(a) for a in args)]
    except TypeError:
        return hint


def fits(produced: object, expected: object) -> bool:
    """Whether items of hint ``produced`` may flow into a parameter of hint ``expected``.

    Accepts everything mypy accepts (see ``_subhint``): unannotated, Any and TypeVar
    hints fit anything, an int fits a float at any depth, a NamedTuple fits a tuple,
    a subclass fits its base, containers by their variance.
    """
    if produced is UNKNOWN or expected is UNKNOWN or produced == expected:
        return True  # the common case, without importing _subhint
    from ._subhint import subhint

    return subhint(produced, expected)


def hint_repr(hint: object) -> str:
    """A hint as a person reads it: ``int``, ``list[str]``, ``<unannotated>``."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def check_edge(producer: str, produced: object, consumer: str, expected: object) -> None:
    """Raise WiringError when ``producer``'s items cannot be ``consumer``'s input."""
    if not fits(produced, expected):
        msg = (
            f"stage {producer!r} produces {hint_repr(produced)} but stage {consumer!r} "
            f"expects {hint_repr(expected)}"
        )
        raise WiringError(msg)


def item_checker(stage: str, where: str, hint: object) -> Callable[[object], None] | None:
    """A function raising StageTypeError for items that do not match ``hint`` (None: no check)."""
    if _is_open(hint) and typing.get_origin(hint) is None:
        return None
    from beartype.door import is_bearable

    expected = _widen(hint)
    shown = hint_repr(hint)

    def check(item: object) -> None:
        try:
            ok = is_bearable(item, cast("Any", expected))
        except Exception:
            ok = True
        if not ok:
            raise StageTypeError(stage, where, shown, type(item).__qualname__, short_repr(item))

    return check


def short_repr(item: object, limit: int = 200) -> str:
    """``repr(item)``, cut to ``limit`` characters, never raising."""
    try:
        text = repr(item)
    except Exception as exc:
        text = f"<{type(item).__qualname__} object; repr() raised {type(exc).__name__}>"
    if len(text) > limit:
        text = f"{text[: limit - 20]}...<{len(text) - limit + 20} more chars>"
    return text
