"""Whether one type hint fits another as mypy reads them: the run-time wiring check.

A dynamic check that rejects a correct program is worse than none, so this relation
says "does not fit" only where mypy does too, and "fits" wherever it cannot tell
(an unusual hint, a user generic it cannot map). It follows PEP 484 and typeshed:
the numeric tower (int -> float -> complex, at any depth), a NamedTuple as the tuple
of its fields, protocols by their methods, TypedDicts by their keys, ``Any`` and
TypeVars as anything, and each container's variance (``list`` invariant, ``Sequence``
covariant, ``Mapping`` covariant in its values, ``Callable`` contravariant in its
parameters).

>>> from collections.abc import Mapping, Sequence
>>> subhint(list[int], Sequence[float]), subhint(dict[str, int], Mapping[str, float])
(True, True)
>>> subhint(list[int], list[float]), subhint(str, int)
(False, False)
"""

from __future__ import annotations

import collections
import collections.abc as abc
import sys
import types
import typing
from typing import Final

__all__ = ["subhint"]

_ANY: Final[object] = typing.Any
_CALLABLE: Final[object] = typing.get_origin(typing.Callable[[], None])

# PEP 484's numeric tower (and bytes' old promotions): int fits float, float fits complex.
_PROMOTIONS: Final[dict[type, tuple[type, ...]]] = {
    float: (int, bool),
    complex: (float, int, bool),
    bytes: (bytearray, memoryview),
}
# Containers whose first type argument is their element type.
_ELEMENT: Final = frozenset(
    {
        list,
        set,
        frozenset,
        collections.deque,
        abc.Iterable,
        abc.Iterator,
        abc.Collection,
        abc.Container,
        abc.Reversible,
        abc.Sequence,
        abc.MutableSequence,
        abc.Set,
        abc.MutableSet,
        abc.KeysView,
        abc.ValuesView,
        abc.Generator,
        abc.AsyncIterable,
        abc.AsyncIterator,
    }
)
# Mappings: (key, value).
_MAPPING: Final = frozenset(
    {
        dict,
        collections.defaultdict,
        collections.OrderedDict,
        collections.ChainMap,
        abc.Mapping,
        abc.MutableMapping,
    }
)
# Where the expected container is mutable, its element (or key and value) is invariant.
_INVARIANT: Final = frozenset(
    {
        list,
        set,
        dict,
        collections.deque,
        collections.defaultdict,
        collections.OrderedDict,
        collections.ChainMap,
        abc.MutableSequence,
        abc.MutableSet,
        abc.MutableMapping,
    }
)


def subhint(produced: object, expected: object) -> bool:
    """Whether a value of hint ``produced`` may be passed where ``expected`` is annotated."""
    try:
        return _fits(produced, expected)
    except Exception:  # a hint this module does not understand: never a false alarm
        return True


def _strip(hint: object) -> object:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if hint is None:
        return types.NoneType
    return hint


def _is_open(hint: object) -> bool:
    return hint is typing.Any or isinstance(hint, typing.TypeVar | typing.ParamSpec)


def _is_union(hint: object) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _fits(produced: object, expected: object) -> bool:
    p, e = _strip(produced), _strip(expected)
    if _is_open(p) or _is_open(e) or e is object or p == e:
        return True
    if _is_union(p):
        return all(_fits(m, e) for m in typing.get_args(p))
    if _is_union(e):
        return any(_fits(p, m) for m in typing.get_args(e))
    p_origin, e_origin = typing.get_origin(p), typing.get_origin(e)
    if p_origin is typing.Literal:
        values: tuple[object, ...] = typing.get_args(p)
        return all(_fits(type(v), e) or v in typing.get_args(e) for v in values)
    if e_origin is typing.Literal:
        return False
    if isinstance(p, typing.NewType) or isinstance(e, typing.NewType):
        return _fits_newtype(p, e)
    if e_origin is type or e is type:
        return _fits_type(p, e)
    if e_origin is _CALLABLE:
        return _fits_callable(p, e)
    if _is_typeddict(e):
        return _is_typeddict(p) and _fits_typeddict(p, e)
    if _is_protocol(e):
        return _fits_protocol(p, e)
    if e_origin is tuple or e is tuple:
        return _fits_tuple(p, e)
    return _fits_class(p, e)


def _fits_newtype(p: object, e: object) -> bool:
    while isinstance(p, typing.NewType):
        if p is e:
            return True
        p = p.__supertype__
    return not isinstance(e, typing.NewType) and _fits(p, e)


def _fits_type(p: object, e: object) -> bool:
    if typing.get_origin(p) is not type and p is not type:
        return False
    p_args, e_args = typing.get_args(p), typing.get_args(e)
    return not p_args or not e_args or _fits(p_args[0], e_args[0])


def _fits_callable(p: object, e: object) -> bool:
    origin = typing.get_origin(p)
    if origin is not _CALLABLE:
        if origin is typing.Literal:
            return False
        cls = origin or p
        if not isinstance(cls, type) or cls is type or origin is type:
            return True  # a class object is callable: mypy reads its constructor
        # Instances of a class with __call__ are callable: mypy reads its signature.
        return any("__call__" in vars(k) for k in cls.__mro__)
    (*p_params, p_ret), (*e_params, e_ret) = typing.get_args(p), typing.get_args(e)
    if not _fits(p_ret, e_ret):
        return False
    if len(p_params) != 1 or len(e_params) != 1:
        return True
    p_list, e_list = p_params[0], e_params[0]
    if not (isinstance(p_list, list) and isinstance(e_list, list)):
        return True  # ... or a ParamSpec
    pl, el = typing.cast("list[object]", p_list), typing.cast("list[object]", e_list)
    return len(pl) == len(el) and all(_fits(x, y) for x, y in zip(el, pl, strict=True))


def _fits_typeddict(p: object, e: object) -> bool:
    p_hints, e_hints = typing.get_type_hints(p), typing.get_type_hints(e)
    return all(k in p_hints and _fits(p_hints[k], v) for k, v in e_hints.items())


def _is_protocol(hint: object) -> bool:
    return isinstance(hint, type) and bool(getattr(hint, "_is_protocol", False))


def _is_typeddict(hint: object) -> bool:
    """typing's TypedDicts, and typing_extensions' (which can only exist once it is imported)."""
    if typing.is_typeddict(hint):
        return True
    extensions = sys.modules.get("typing_extensions")
    return extensions is not None and bool(extensions.is_typeddict(hint))


def _fits_protocol(p: object, e: object) -> bool:
    """A class fits a protocol that has its methods (data members may be set in __init__)."""
    cls = typing.get_origin(p) or p
    if not isinstance(cls, type):
        return True
    proto = typing.cast("type", e)
    import typing_extensions  # imports inspect: here only, for protocol hints

    members = typing_extensions.get_protocol_members(proto)
    methods = {m for m in members if callable(getattr(proto, m, None))}
    return all(hasattr(cls, m) for m in methods)


def _tuple_shape(p: object) -> tuple[object, ...] | None:
    """The element hints of a tuple-like hint; a 1-tuple ``(X, Ellipsis)`` for ``tuple[X, ...]``."""
    if typing.get_origin(p) is tuple:
        return typing.get_args(p)
    fields: object = getattr(p, "_fields", None)
    if isinstance(p, type) and issubclass(p, tuple) and isinstance(fields, tuple):
        hints = typing.get_type_hints(typing.cast("type", p))
        names = typing.cast("tuple[str, ...]", fields)
        return tuple(hints.get(f, _ANY) for f in names)
    return None


def _fits_tuple(p: object, e: object) -> bool:
    p_shape = _tuple_shape(p)
    e_args = typing.get_args(e)
    if p_shape is None:
        return p is tuple or (isinstance(p, type) and issubclass(p, tuple) and not e_args)
    if not e_args:
        return True
    p_var = len(p_shape) == 2 and p_shape[1] is Ellipsis
    if len(e_args) == 2 and e_args[1] is Ellipsis:
        items = p_shape[:1] if p_var else p_shape
        return all(_fits(x, e_args[0]) for x in items)
    if p_var:
        return False
    if e_args == ((),):  # tuple[()]
        return p_shape in ((), ((),))
    return len(p_shape) == len(e_args) and all(
        _fits(x, y) for x, y in zip(p_shape, e_args, strict=True)
    )


def _element(p: object, p_cls: type) -> object | None:
    """The element hint of a container hint, or None when it cannot be read."""
    args = typing.get_args(p)
    shape = _tuple_shape(p)
    if shape is not None:
        if len(shape) == 2 and shape[1] is Ellipsis:
            return shape[0]
        union: object = typing.Union[shape] if shape and shape != ((),) else _ANY  # noqa: UP007
        return union
    if not args:
        return _ANY
    first: object = args[0]
    return first if p_cls in _ELEMENT or p_cls in _MAPPING else None


def _fits_class(p: object, e: object) -> bool:
    p_cls, e_cls = typing.get_origin(p) or p, typing.get_origin(e) or e
    if not (isinstance(p_cls, type) and isinstance(e_cls, type)):
        return True
    if _is_typeddict(p_cls):
        p_cls = dict  # a TypedDict is a Mapping[str, object] (and no dict) for mypy
        if e_cls is dict or e_cls in _INVARIANT:
            return False
        p = abc.Mapping[str, object]
    if _is_protocol(p_cls):
        return e_cls is object
    if p_cls in _PROMOTIONS.get(e_cls, ()):
        return True
    if not issubclass(p_cls, e_cls):
        return False
    e_args = typing.get_args(e)
    if not e_args:
        return True
    if not typing.get_args(p) and _tuple_shape(p) is None:
        return True  # a bare generic is generic in Any
    return _fits_args(p, p_cls, e_cls, e_args)


def _fits_args(p: object, p_cls: type, e_cls: type, e_args: tuple[object, ...]) -> bool:
    invariant = e_cls in _INVARIANT
    if e_cls in _MAPPING:
        if p_cls not in _MAPPING or len(typing.get_args(p)) != 2 or len(e_args) != 2:
            return True
        (pk, pv), (ek, ev) = typing.get_args(p), e_args
        return _same(pk, ek) and (_same(pv, ev) if invariant else _fits(pv, ev))
    if e_cls in _ELEMENT:
        element = _element(p, p_cls)
        if element is None:
            return True
        return _same(element, e_args[0]) if invariant else _fits(element, e_args[0])
    if p_cls is e_cls:  # a user generic: each parameter's declared variance
        params = getattr(e_cls, "__parameters__", ())
        p_args = typing.get_args(p)
        if len(params) != len(e_args) or len(p_args) != len(e_args):
            return True
        return all(
            _fits(a, b)
            if getattr(v, "__covariant__", False)
            else _fits(b, a)
            if getattr(v, "__contravariant__", False)
            else _same(a, b)
            for v, a, b in zip(params, p_args, e_args, strict=True)
        )
    return True


def _same(a: object, b: object) -> bool:
    """Invariance: each fits the other."""
    return _fits(a, b) and _fits(b, a)
