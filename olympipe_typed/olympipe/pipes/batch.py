"""olympipe's ``olympipe.pipes.batch``: ``BatchPipe``, the step of ``Pipeline.batch``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["BatchPipe"]


class BatchPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.batch``."""

    _method: ClassVar[str | None] = "batch"
