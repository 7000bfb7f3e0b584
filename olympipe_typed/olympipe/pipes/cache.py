"""olympipe's ``olympipe.pipes.cache``: ``CacheEnvelope`` and the steps of ``cached_task``.

``CacheEnvelope`` here carries ``data`` and ``key`` (olympipe's ``lineage_hash`` is the
same idea: the key the result was stored under), also readable as ``lineage_hash``.
"""

from typing import ClassVar

from ..._pipeline import CacheEnvelope as CacheEnvelope
from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["CacheEnvelope", "CachedTaskPipe", "UncachePipe"]


class CachedTaskPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.cached_task``."""

    _method: ClassVar[str | None] = "cached_task"


class UncachePipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.uncache``."""

    _method: ClassVar[str | None] = "uncache"
