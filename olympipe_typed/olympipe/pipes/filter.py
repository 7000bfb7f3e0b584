"""olympipe's ``olympipe.pipes.filter``: ``FilterPipe``, the step of ``Pipeline.filter``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["FilterPipe"]


class FilterPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.filter``."""

    _method: ClassVar[str | None] = "filter"
