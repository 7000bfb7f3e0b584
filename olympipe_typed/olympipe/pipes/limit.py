"""olympipe's ``olympipe.pipes.limit``: ``LimitPipe``, the step of ``Pipeline.limit``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["LimitPipe"]


class LimitPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.limit``."""

    _method: ClassVar[str | None] = "limit"
