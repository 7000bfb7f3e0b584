"""olympipe's ``olympipe.pipes.checkpoint``: ``CheckpointPipe``, the step of ``Pipeline.checkpoint``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["CheckpointPipe"]


class CheckpointPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.checkpoint``."""

    _method: ClassVar[str | None] = "checkpoint"
