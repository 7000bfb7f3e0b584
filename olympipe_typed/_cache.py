"""``cached_task``'s function: results on disk, keyed by what decides them, signed.

    cache_dir/.key                              32 random bytes, mode 0600, made on first use
    cache_dir/<function key>/<item key>.pkl     MAGIC + HMAC-SHA256(.key, item key + payload) + payload

The function key digests what decides ``fn``'s results (``function_key``); an item's key
adds the item's pickle, or the previous cached step's key. Imported by ``cached_task``
only: plain pipelines never pay for pickle, hashlib or beartype.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import hashlib
import hmac
import io
import os
import pickle
import secrets
import stat
import sys
import sysconfig
import tempfile
import time
from types import CellType, CodeType, FunctionType, ModuleType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import cloudpickle

from ._errors import StageTypeError
from ._hints import callable_hints, item_checker
from ._ops import label_of
from ._pipeline import CacheEnvelope

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")
R = TypeVar("R")

_MAGIC: Final = b"olympipe_typed cache entry 1\n"
_MAC_SIZE: Final = 32  # HMAC-SHA256
_SECRET: Final = ".key"
_NAMES_WAIT: Final = 50  # looks, 10 ms apart, for a new key's temporary second name to go
_MISS: Final = object()


@final
class Cached(Generic[T, R]):
    """``cached_task``'s function: the stored result of ``fn`` on an item, else compute and store it.

    Results can be any object, so only pickle can store them, and loading a pickle runs
    code: an entry is unpickled only once its HMAC, under a key only this user can read,
    shows that this library wrote it for this item. Anything else (a truncated, garbage or
    planted file, or a result that no longer fits ``fn``'s return annotation) is a miss,
    recomputed and rewritten atomically.
    """

    def __init__(self, fn: Callable[[T], R], cache_dir: str, fn_key: str) -> None:
        self.fn = fn
        self.cache_dir = cache_dir
        self.fn_key = fn_key
        self.__name__ = label_of(fn)

    def __reduce__(self) -> tuple[type[Cached[T, R]], tuple[Callable[[T], R], str, str]]:
        # The secret and the checker are read again where the function runs.
        return (Cached, (self.fn, self.cache_dir, self.fn_key))

    @functools.cached_property
    def _secret(self) -> bytes:
        return _load_secret(self.cache_dir)

    @functools.cached_property
    def _check(self) -> Callable[[object], None] | None:
        # beartype is imported on the first entry found, not before.
        return item_checker(self.__name__, "cached result", callable_hints(self.fn)[1])

    def _fits(self, result: object) -> bool:
        """Whether a stored result matches ``fn``'s return annotation (always, without one)."""
        try:
            if self._check is not None:
                self._check(result)
        except StageTypeError:
            return False
        return True

    def __call__(self, item: T) -> CacheEnvelope[R]:
        if isinstance(item, CacheEnvelope):  # a chain of cached steps: the previous key says it
            envelope = cast("CacheEnvelope[Any]", item)
            identity, item = envelope.key.encode(), envelope.data
        else:
            identity = cloudpickle.dumps(item)
        key = hashlib.sha256(self.fn_key.encode() + identity).hexdigest()
        path = os.path.join(self.cache_dir, self.fn_key, f"{key}.pkl")
        found = _read(path, key, self._secret)
        if found is not _MISS and self._fits(found):
            return CacheEnvelope(cast("R", found), key)
        result = self.fn(item)
        _write(path, key, self._secret, result)
        return CacheEnvelope(result, key)


def _sign(secret: bytes, key: str, payload: bytes | memoryview) -> bytes:
    # The item key is signed too: an entry moved to another item's name is not valid there.
    mac = hmac.new(secret, key.encode(), hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def _read(path: str, key: str, secret: bytes) -> object:
    """The result stored at ``path``, or _MISS if it is absent, unreadable or not signed."""
    # A regular file, not through a link: a FIFO planted there would block the run for ever,
    # a link to /dev/zero would fill its memory.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return _MISS
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return _MISS
        data = f.read()
    start = len(_MAGIC) + _MAC_SIZE
    view = memoryview(data)  # slices without copying a large payload
    mac, payload = view[len(_MAGIC) : start], view[start:]
    if not data.startswith(_MAGIC) or not hmac.compare_digest(mac, _sign(secret, key, payload)):
        return _MISS
    try:
        return pickle.loads(payload)
    except Exception:  # signed, but no longer loadable (a class renamed since): recompute
        return _MISS


def _write(path: str, key: str, secret: bytes, result: object) -> None:
    """Store ``result`` at ``path`` atomically: a reader sees the old file or the whole new one."""
    payload = cloudpickle.dumps(result)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + _sign(secret, key, payload) + payload)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _load_secret(cache_dir: str) -> bytes:
    """``cache_dir``'s signing key, made on first use; refused if anyone else could know it."""
    path = os.path.join(cache_dir, _SECRET)
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            # A link never replaces a key that another worker made first (os.replace would).
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    # Not through a symbolic link: someone who can write to the folder could point it at
    # a file of ours whose content they know.
    # One name only: a hard link could be another user's file, known to them.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        msg = f"cache key file {path!r} cannot be read as a regular file: {exc}"
        raise PermissionError(msg) from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        # Another worker that made the key a moment ago removes its temporary name next:
        # a second name that stays is refused below.
        for _ in range(_NAMES_WAIT):
            if info.st_nlink == 1:
                break
            time.sleep(0.01)
            info = os.fstat(fd)
        secret = f.read(33) if stat.S_ISREG(info.st_mode) else b""
    if (
        info.st_uid != os.getuid()
        or info.st_mode & 0o077
        or info.st_nlink != 1
        or len(secret) != 32
    ):
        msg = (
            f"cache key file {path!r} must be a regular file of 32 bytes, with one name, that "
            f"belongs to this user and that no one else can read (mode 0o600; got uid "
            f"{info.st_uid}, mode {info.st_mode & 0o777:#o}, {info.st_nlink} names, "
            f"{len(secret)} bytes)"
        )
        raise PermissionError(msg)
    return secret


def function_key(fn: object, cache_key: str | None) -> str:
    """The part of every key that stands for ``fn``: ``cache_key`` if given, else ``fn``'s digest.

    Raises:
        TypeError: something ``fn`` uses cannot be pickled, and no ``cache_key`` is given.
    """
    if cache_key is not None:
        return hashlib.sha256(b"cache_key\0" + cache_key.encode()).hexdigest()[:32]
    keyer = _Keyer()
    try:
        return keyer.digest(fn).hex()[:32]
    except Exception as exc:
        where = " in ".join(reversed(keyer.path)) or "the function itself"
        msg = (
            f"cached_task cannot compute a key for {label_of(fn)!r}: {where} cannot be "
            f"pickled ({type(exc).__name__}: {exc}); pass cache_key='...' to name its results"
        )
        raise TypeError(msg) from exc


class _Keyer:
    """Digests of values, in whose pickles each function, class and module stands for what
    decides its behaviour: code and data for the user's code, name and version for
    installed code."""

    def __init__(self) -> None:
        # id -> (the object, kept alive so that its id stays its own; its stand-in)
        self.done: dict[int, tuple[object, str]] = {}
        self.path: list[str] = []  # what is being digested, innermost last, for errors

    def digest(self, value: object) -> bytes:
        buffer = io.BytesIO()
        _KeyPickler(buffer, self).dump(value)
        return hashlib.sha256(buffer.getvalue()).digest()

    def part(self, where: str, value: object) -> bytes:
        self.path.append(where)
        digest = self.digest(_ordered(value))
        self.path.pop()  # left in place when digest() raises: the error says where
        return digest

    def stand_in(self, obj: object) -> str | None:
        """The text that replaces a function, class or module in a key's pickle; else None."""
        if isinstance(obj, ModuleType):
            version = getattr(obj, "__version__", None) or _installed_version(obj.__name__)
            return f"module {obj.__name__} {version}"
        if not isinstance(obj, FunctionType | type):
            return None
        if id(obj) in self.done:
            return self.done[id(obj)][1]
        name = f"{obj.__module__}.{obj.__qualname__}"
        self.done[id(obj)] = (obj, f"cycle {name}")  # what a function reaching itself sees
        parts = self._function(obj) if isinstance(obj, FunctionType) else self._class(obj)
        stand_in = f"{name} {self.digest(parts).hex()}"
        self.done[id(obj)] = (obj, stand_in)
        return stand_in

    def _function(self, fn: FunctionType) -> object:
        """Closure cells and defaults; then the code and the globals it reads, or the version."""
        name = fn.__qualname__
        cells = [
            self.part(f"closure variable {var!r} of {name}", _cell_contents(cell))
            for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True)
        ]
        defaults = [self.part(f"default of {p!r} of {name}", value) for p, value in _defaults(fn)]
        version = _installed_version(fn.__module__)
        if version is not None:
            return (cells, defaults, version)
        reads = [
            (g, self.part(f"global {g!r} of {name}", fn.__globals__[g]))
            for g in sorted(_global_names(fn.__code__))
            if g in fn.__globals__  # else a builtin, fixed by the Python version
        ]
        return (cells, defaults, _code(fn.__code__), reads)

    def _class(self, cls: type) -> object:
        """The bases, methods and class attributes of the user's class; else the version."""
        version = _installed_version(cls.__module__)
        if version is not None:
            return version
        members = [
            (k, self.part(f"attribute {k!r} of {cls.__qualname__}", v))
            for k, v in sorted(vars(cls).items())
            if _decides(k, v)
        ]
        return (self.part(f"bases of {cls.__qualname__}", cls.__bases__), members)


class _KeyPickler(cloudpickle.Pickler):
    """cloudpickle, with functions, classes and modules replaced by their stand-ins."""

    def __init__(self, file: io.BytesIO, keyer: _Keyer) -> None:
        super().__init__(file, protocol=5)
        self.keyer = keyer

    def reducer_override(self, obj: Any) -> Any:
        stand_in = self.keyer.stand_in(obj)
        if stand_in is None:
            return super().reducer_override(obj)
        return (sys.intern, (stand_in,))  # a builtin function: pickled by name, never overridden


def _cell_contents(cell: CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet
        return "<empty cell>"


def _defaults(fn: FunctionType) -> list[tuple[str, object]]:
    """``fn``'s default arguments, by parameter name."""
    code = fn.__code__
    positional = code.co_varnames[: code.co_argcount]
    values = fn.__defaults__ or ()
    named: list[tuple[str, object]] = list(
        zip(positional[len(positional) - len(values) :], values, strict=True)
    )
    return named + sorted((fn.__kwdefaults__ or {}).items())


def _decides(name: str, value: object) -> bool:
    """Whether a class attribute belongs in its key: not the bookkeeping dunders, nor ABC caches."""
    dunder = name.startswith("__") and name.endswith("__")
    code = isinstance(value, FunctionType | staticmethod | classmethod | property)
    return (code or not dunder) and name != "_abc_impl"


def _code(code: CodeType) -> tuple[object, ...]:
    """Bytecode, names and constants, nested code included; not line numbers nor file names."""
    consts = tuple(
        _code(c) if isinstance(c, CodeType) else repr(_ordered(c)) for c in code.co_consts
    )
    return (code.co_code, code.co_names, consts)


def _ordered(value: object) -> object:
    """A set as a sorted list: its own order changes with string hashing in each interpreter.

    (Only at the top of a value: sets inside other values keep their order, so a value
    holding a set of strings gives another key in another interpreter: a miss, not an error.)
    """
    if not isinstance(value, set | frozenset):
        return value
    members = cast("set[object]", value)
    return (type(members).__name__, sorted(members, key=repr))


def _global_names(code: CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it read."""
    names = {
        str(i.argval)
        for i in dis.get_instructions(code)
        if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    }
    for c in code.co_consts:
        if isinstance(c, CodeType):
            names |= _global_names(c)
    return names


@functools.cache
def _installed_version(module: str | None) -> str | None:
    """The package's version for site-packages, Python's for the standard library; None for
    the user's own code (an editable install included), which is keyed by its code."""
    top = (module or "").partition(".")[0]
    found = sys.modules.get(module or "")
    file = getattr(found, "__file__", None)
    if found is not None and file is None and top in sys.stdlib_module_names:
        return f"python {sys.version}"  # built into the interpreter
    if not isinstance(file, str):
        return None
    path = os.path.realpath(file)
    # site-packages first: outside a virtual environment, it lies inside the standard library.
    if path.startswith(_folders("purelib", "platlib")):
        return f"{top} {_distribution_version(top)}"
    if path.startswith(_folders("stdlib", "platstdlib")) and top in sys.stdlib_module_names:
        return f"python {sys.version}"
    return None


@functools.cache
def _distribution_version(top: str) -> str:
    """The installed version of the distribution that provides module ``top`` (many have no
    ``__version__``: typing_extensions, namespace packages)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    names = packages_distributions().get(top, [])
    if not names:
        return str(getattr(sys.modules.get(top), "__version__", ""))
    try:
        return " ".join(f"{name}=={version(name)}" for name in sorted(names)) or top
    except PackageNotFoundError:
        return str(getattr(sys.modules.get(top), "__version__", ""))


@functools.cache
def _folders(*names: str) -> tuple[str, ...]:
    """The installation folders called ``names`` by sysconfig, each ending with a separator."""
    return tuple(os.path.join(os.path.realpath(sysconfig.get_path(n)), "") for n in names)
