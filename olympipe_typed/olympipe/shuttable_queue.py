"""olympipe's ``olympipe.shuttable_queue``: here, the read-only view of a stage's queue."""

from .._monitor import StageQueue as ShuttableQueue

__all__ = ["ShuttableQueue"]
