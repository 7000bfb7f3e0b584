from collections import ChainMap
from collections.abc import Callable
from pickle import Pickler as _Pickler
from pickle import load as load
from pickle import loads as loads
from typing import IO, Any

__all__ = [
    "CloudPickler",
    "Pickler",
    "__version__",
    "dump",
    "dumps",
    "load",
    "loads",
    "register_pickle_by_value",
    "unregister_pickle_by_value",
]
__version__: str
DEFAULT_PROTOCOL: int

def dumps(
    obj: object, protocol: int | None = None, buffer_callback: Callable[[Any], object] | None = None
) -> bytes: ...
def dump(
    obj: object,
    file: IO[bytes],
    protocol: int | None = None,
    buffer_callback: Callable[[Any], object] | None = None,
) -> None: ...
def register_pickle_by_value(module: Any) -> None: ...
def unregister_pickle_by_value(module: Any) -> None: ...

class Pickler(_Pickler):
    dispatch: ChainMap[type, Callable[..., Any]]
    def __init__(
        self,
        file: IO[bytes],
        protocol: int | None = None,
        buffer_callback: Callable[[Any], object] | None = None,
    ) -> None: ...
    def dump(self, obj: Any) -> None: ...
    def reducer_override(self, obj: Any) -> Any: ...

CloudPickler = Pickler
