"""olympipe's ``olympipe.pipes.splitter``: ``SplitterPipe``, the step of ``Pipeline.split`` (which gives one pipeline per branch, not ``create_pipe``)."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["SplitterPipe"]


class SplitterPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.split`` (which gives one pipeline per branch, not ``create_pipe``)."""

    _method: ClassVar[str | None] = "split"
