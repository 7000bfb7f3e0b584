"""olympipe's ``olympipe.pipes.debug``: ``DebugPipe``, the step of ``Pipeline.debug``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["DebugPipe"]


class DebugPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.debug``."""

    _method: ClassVar[str | None] = "debug"
