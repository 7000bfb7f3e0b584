"""olympipe's ``olympipe.pipes.reduce``: ``ReducePipe``, the step of ``Pipeline.reduce``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["ReducePipe"]


class ReducePipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.reduce``."""

    _method: ClassVar[str | None] = "reduce"
