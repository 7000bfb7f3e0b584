"""olympipe's ``olympipe.pipes.gather``: ``GatherPipe``, the step of ``Pipeline.gather`` (which takes the other pipelines, not ``create_pipe``)."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["GatherPipe"]


class GatherPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.gather`` (which takes the other pipelines, not ``create_pipe``)."""

    _method: ClassVar[str | None] = "gather"
