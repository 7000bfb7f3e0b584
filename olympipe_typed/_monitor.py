"""``Pipeline.queues``: what is in flight at each stage of a run, read while it runs.

olympipe registers its inter-process queues (with ``enable_monitoring()``) and lets a caller
read their sizes. Here a stage's queue is the items its parents have sent it and it has not
taken yet; the numbers come from the counts workers already send the caller for the planner
and the progress bars (every 0.1 s while items flow), so watching costs the run nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from ._report import Recorder

__all__ = ["StageQueue"]


@final
class StageQueue:
    """The queue in front of one stage of a pipeline's current or last run (read-only).

    Counts are live on the process and thread backends (about 0.1 s old) and final once the run has ended.
    """

    __slots__ = ("_recorder", "name")

    def __init__(self, recorder: Recorder, name: str) -> None:
        self._recorder = recorder
        self.name = name

    @property
    def items_in(self) -> int:
        """Items the stage has taken so far."""
        return self._recorder.totals(self.name)[0]

    @property
    def items_out(self) -> int:
        """Items the stage has emitted so far."""
        return self._recorder.totals(self.name)[1]

    def qsize(self) -> int:
        """Items sent to the stage that it has not taken yet."""
        return max(0, self._recorder.fed(self.name) - self.items_in)

    def empty(self) -> bool:
        return self.qsize() == 0

    @property
    def is_closed(self) -> bool:
        """True once the run has ended: nothing more will come through this queue."""
        return self._recorder.ended is not None

    def snapshot(self) -> dict[str, object]:
        """The numbers above in one dict (olympipe's ``snapshot()``)."""
        items_in, items_out = self._recorder.totals(self.name)
        waiting = max(0, self._recorder.fed(self.name) - items_in)
        return {
            "name": self.name,
            "size": waiting,
            "items_in": items_in,
            "items_out": items_out,
            "closed": self.is_closed,
        }

    def __repr__(self) -> str:
        return f"<StageQueue {self.name!r}: {self.qsize()} waiting>"
