"""olympipe's ``olympipe.pipes.instance``: ``ClassInstancePipe``, the step of ``Pipeline.class_task``."""

from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import GenericPipe

__all__ = ["ClassInstancePipe"]


class ClassInstancePipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.class_task``."""

    _method: ClassVar[str | None] = "class_task"
