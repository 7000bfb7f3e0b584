"""olympipe's ``olympipe.pipes.task``: ``TaskPipe``, the step of ``Pipeline.task``."""

from collections.abc import Callable
from typing import ClassVar

from ..types import InPacket, OutPacket
from .generic import _SKIP, GenericPipe

__all__ = ["TaskPipe"]


class TaskPipe(GenericPipe[InPacket, OutPacket]):
    """The step of ``Pipeline.task``: ``task(item)``, and ``on_error(item, exc)`` when it raises (its
    result replaces the item; ``None`` drops it). A subclass may override ``_perform_task``."""

    _method: ClassVar[str | None] = "task"

    def __init__(
        self,
        father_process_dag: object = None,
        source: object = None,
        task: Callable[[InPacket], OutPacket] | None = None,
        target: object = None,
        on_error: Callable[[InPacket, Exception], OutPacket | None] | None = None,
        auto_start: bool = False,
    ) -> None:
        super().__init__(father_process_dag, source, target, auto_start)
        self._task = task
        self._on_error = on_error

    @property
    def shortname(self) -> str:
        return str(getattr(self._task, "__name__", "task"))

    def _perform_task(self, data: InPacket) -> OutPacket:
        if self._task is None:
            msg = "TaskPipe needs task="
            raise TypeError(msg)
        if self._on_error is None:
            return self._task(data)
        try:
            return self._task(data)
        except Exception as exc:
            result = self._on_error(data, exc)
            return _SKIP if result is None else result
