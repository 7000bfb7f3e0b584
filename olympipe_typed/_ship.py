"""Pickles a stage for spawn and forkserver workers: the script's classes by reference.

Such a worker re-imports the caller's script as ``__mp_main__`` (aliased ``__main__``). Plain
cloudpickle sends the script's functions and classes by value, so a worker's ``Rec`` is a copy:
its ``Rec(...)`` results then fail the standard pickle ("not the same object as
__main__.Rec", issue 22), and its tracebacks show no source line. Here functions still travel
by value (with the caller's globals, as inline), keeping their file name, and a module-level
class of the script is sent as a lookup in the worker's ``__main__``, with a by-value copy in
case the lookup fails (defined under the ``if __name__ == "__main__":`` guard, or
differently)::

    dumps(op) = pickle of _unpack(fallbacks, payload)
        payload:   op by cloudpickle, a script-level Rec as _from_main("Rec", ...)
        fallbacks: {"Rec": Rec by value (its own script-level names as _from_main), ...}

A fallback is pickled with its object, and the objects being pickled around it, by value:
it only refers to fallbacks pickled before it, so loading one never loops.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import pickle
import sys
import types
from typing import TYPE_CHECKING, Any, Final

from ._ops import ClassSpec
from ._stage import ClassStageFactory, Stage
from ._template import Leaf

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["dumps"]

_PROTOCOL: Final = 5
# What the worker checks before it uses its own class: the global names its methods read,
# with their values' type names (a name assigned under the __main__ guard differs).
Names = tuple[tuple[str, str], ...]
Reference = tuple[str, int | None, Names]  # qualname, first line, names
Fallbacks = dict[str, bytes | str]  # qualname -> by-value pickle, or why there is none
_GLOBAL_OPS: Final = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"})
# The module of a script's objects: in the caller, or in a worker that runs a pipeline too.
_MAIN: Final = frozenset({"__main__", "__mp_main__"})


def dumps(obj: object) -> bytes:
    """``obj`` pickled (protocol 5) for a worker that imports the script anew.

    By the standard pickle when it can and nothing of ``__main__`` is involved (no import);
    else by cloudpickle, with the script's classes sent by reference.

    >>> import pickle
    >>> pickle.loads(dumps(lambda x: x + 1))(1)
    2
    """
    with contextlib.suppress(Exception):
        file = io.BytesIO()
        _StdlibPickler(file, protocol=_PROTOCOL).dump(obj)
        return file.getvalue()
    shipment = _Shipment()
    shipment.payload = shipment.dump(obj, frozenset())
    if not shipment.fallbacks:
        return shipment.payload
    return pickle.dumps(shipment, protocol=_PROTOCOL)


class _StdlibPickler(pickle.Pickler):
    """The standard pickle, refusing the functions and classes of ``__main__``: by reference,
    they would be missing from a worker whose script defines them under the guard."""

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, type | types.FunctionType) and obj.__module__ in _MAIN:
            msg = f"{obj.__qualname__} is defined in __main__"
            raise pickle.PicklingError(msg)
        return NotImplemented


class _Shipment:
    """One ``dumps()``: the payload and the fallbacks of the script objects it refers to."""

    __slots__ = ("fallbacks", "payload", "references")

    def __init__(self) -> None:
        self.fallbacks: Fallbacks = {}
        self.payload = b""
        # By id: each object is kept alive with it, so that its id is not reused meanwhile.
        self.references: dict[int, tuple[object, Reference | None]] = {}

    def dump(self, obj: object, by_value: frozenset[int]) -> bytes:
        """``obj`` pickled, the objects whose ids are in ``by_value`` by value."""
        return _pickler()(obj, by_value, self)

    def refer(self, obj: object, by_value: frozenset[int]) -> Reference | None:
        """How to send ``obj`` by reference; None: by value, as cloudpickle does.

        Classes only. A function goes by value with the globals it reads as the caller has
        them: the worker's import of the script may have other values (a setting changed
        under the ``__main__`` guard), and a stage must compute what it computes inline.
        A class is the script's: its instances must be the caller's class again.
        """
        if id(obj) in by_value or not isinstance(obj, type):
            return None
        if id(obj) not in self.references:
            self.references[id(obj)] = (obj, _reference(obj))
        ref = self.references[id(obj)][1]
        if ref is not None and ref[0] not in self.fallbacks:
            # Pickled by value with its own reference cut: no fallback refers to itself.
            try:
                self.fallbacks[ref[0]] = self.dump(obj, by_value | {id(obj)})
            except Exception as exc:  # loaded only if the worker lacks obj: say why then
                self.fallbacks[ref[0]] = f"{type(exc).__name__}: {exc}"
        return ref

    def __reduce__(self) -> tuple[Callable[[Fallbacks, bytes], object], tuple[Fallbacks, bytes]]:
        return _unpack, (self.fallbacks, self.payload)


@functools.cache
def _pickler() -> Callable[[object, frozenset[int], _Shipment], bytes]:
    """The pickle function of ``_Shipment``: cloudpickle is imported on first use (~25 ms)."""
    import cloudpickle

    class MainPickler(cloudpickle.Pickler):
        def __init__(self, file: io.BytesIO, by_value: frozenset[int], shipment: _Shipment) -> None:
            super().__init__(file, protocol=_PROTOCOL)
            self.by_value = by_value  # ids of the objects to send by value here
            self.shipment = shipment

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, types.CodeType) and not obj.co_filename.startswith("<"):
                # cloudpickle names the file "<dynamic-code>": keep it, for tracebacks.
                reduced = self.dispatch_table[types.CodeType](obj)
                if isinstance(reduced, tuple) and len(reduced) == 2:
                    return _code_at, (*reduced, obj.co_filename)
            ref = self.shipment.refer(obj, self.by_value)
            if ref is None:
                return super().reducer_override(obj)
            return _from_main, ref

    def dump(obj: object, by_value: frozenset[int], shipment: _Shipment) -> bytes:
        with io.BytesIO() as file:
            MainPickler(file, by_value, shipment).dump(obj)
            return file.getvalue()

    return dump


# --- in the caller: what can go by reference ---


def _reference(obj: type) -> Reference | None:
    """``obj`` as a name of ``__main__`` a worker can look up, if it is one."""
    qualname = obj.__qualname__
    # Module level only: nested and local classes go by value. (A worker that runs a
    # pipeline under spawn ships its own classes, of "__mp_main__".)
    if obj.__module__ not in _MAIN or "." in qualname or "<" in qualname:
        return None
    main = sys.modules.get("__main__")
    if main is None or not _reimported(main):
        return None
    namespace = vars(main)
    if _unwrap(namespace.get(qualname)) is not obj:
        return None  # the name now means something else: the worker's would too
    names = {n for code in _codes(obj) for n in _global_names(code)}
    typed = sorted(_typed(namespace, names & namespace.keys()))
    return qualname, _first_line(obj), tuple(typed)


def _reimported(main: types.ModuleType) -> bool:
    """Whether spawn and forkserver workers re-import ``main`` (as multiprocessing.spawn does)."""
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if isinstance(name, str):  # python -m name; not a package's __main__.py
        return name != "__main__" and not name.endswith(".__main__")
    return isinstance(getattr(main, "__file__", None), str)  # not a notebook or a prompt


def _first_line(obj: type) -> int | None:
    """Where the script defines ``obj``: a name defined twice (once under the guard) differs."""
    first = getattr(obj, "__firstlineno__", None)  # Python 3.13+
    if isinstance(first, int):
        return first
    lines = [c.co_firstlineno for c in _codes(obj, bases=False) if c.co_filename[:1] != "<"]
    return min(lines, default=None)  # its first method (dataclasses' are in "<string>")


def _codes(obj: type, *, bases: bool = True) -> Iterator[types.CodeType]:
    """The code of the methods of a class and of its script-level bases."""
    for klass in obj.__mro__ if bases else (obj,):
        if klass.__module__ not in _MAIN:
            continue
        for value in vars(klass).values():
            member: object = value
            parts: tuple[object, ...] = (getattr(member, "__func__", member),)  # static, class
            if isinstance(member, property):
                parts = (member.fget, member.fset, member.fdel)
            yield from (p.__code__ for p in parts if isinstance(p, types.FunctionType))


def _global_names(code: types.CodeType) -> Iterator[str]:
    """The global names ``code`` and the code nested in it use."""
    import dis

    for instruction in dis.get_instructions(code):
        if instruction.opname in _GLOBAL_OPS:
            yield str(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _typed(namespace: dict[str, object], names: set[str]) -> Iterator[tuple[str, str]]:
    return ((name, type(namespace[name]).__qualname__) for name in names)


def _unwrap(value: object) -> object:
    """The class behind a script name: ``@stage`` binds a class to a Stage or a factory."""
    found: object = value
    if isinstance(value, ClassStageFactory):
        found = value._cls
    elif isinstance(value, Stage) and isinstance(value._template, Leaf):
        fn = value._template.op.fn
        if isinstance(fn, ClassSpec):
            found = fn.cls
    return found


# --- in the worker ---


class _Loading:
    """The fallbacks of the shipment being unpickled, and those already loaded."""

    __slots__ = ("fallbacks", "loaded")

    def __init__(self, fallbacks: Fallbacks) -> None:
        self.fallbacks = fallbacks
        self.loaded: dict[str, object] = {}


_LOADING: contextvars.ContextVar[_Loading | None] = contextvars.ContextVar(
    "olympipe_typed_loading", default=None
)


def _unpack(fallbacks: Fallbacks, payload: bytes) -> object:
    """Unpickle ``payload``, its ``_from_main`` calls reading ``fallbacks``."""
    token = _LOADING.set(_Loading(fallbacks))
    try:
        return pickle.loads(payload)
    finally:
        _LOADING.reset(token)


def _from_main(qualname: str, line: int | None, names: Names) -> object:
    """The worker's class ``__main__.<qualname>`` if it is the caller's, else its by-value copy."""
    found = _unwrap(getattr(sys.modules.get("__main__"), qualname, None))
    namespace: dict[str, object] = {}
    if isinstance(found, type):
        namespace = getattr(sys.modules.get(found.__module__), "__dict__", {})
    if (
        isinstance(found, type)
        and found.__qualname__ == qualname
        and _first_line(found) == line
        and all(n in namespace and type(namespace[n]).__qualname__ == t for n, t in names)
    ):
        return found
    loading = _LOADING.get()
    fallback = None if loading is None else loading.fallbacks.get(qualname)
    if loading is None or not isinstance(fallback, bytes):
        msg = (
            f"the worker's __main__ has no class {qualname!r} as the caller's (defined under "
            f"`if __name__ == '__main__':`?), and it could not be sent by value: {fallback!s}"
        )
        raise pickle.UnpicklingError(msg)
    if qualname not in loading.loaded:
        loading.loaded[qualname] = pickle.loads(fallback)
    return loading.loaded[qualname]


def _code_at(
    make: Callable[..., types.CodeType], args: tuple[object, ...], filename: str
) -> types.CodeType:
    """A code object cloudpickle rebuilds, with its file name back (for tracebacks)."""
    return make(*args).replace(co_filename=filename)
