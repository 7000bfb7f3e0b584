"""olympipe's ``olympipe.monitorable_queue``: what ``Pipeline.queues`` holds, one per stage."""

from .._monitor import StageQueue as MonitorableQueue

__all__ = ["MonitorableQueue"]
