"""olympipe's ``olympipe.pipes.timeout``: ``TimeoutPipe``, the step of ``Pipeline.timeout``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["TimeoutPipe"]


class TimeoutPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.timeout``."""

    _method: ClassVar[str | None] = "timeout"
