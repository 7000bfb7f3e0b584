"""olympipe's ``olympipe.pipes.explode``: ``ExplodePipe``, the step of ``Pipeline.explode``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["ExplodePipe"]


class ExplodePipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.explode``."""

    _method: ClassVar[str | None] = "explode"
