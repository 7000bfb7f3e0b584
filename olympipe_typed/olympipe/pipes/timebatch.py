"""olympipe's ``olympipe.pipes.timebatch``: ``TimeBatchPipe``, the step of ``Pipeline.temporal_batch``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["TimeBatchPipe"]


class TimeBatchPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.temporal_batch``."""

    _method: ClassVar[str | None] = "temporal_batch"
