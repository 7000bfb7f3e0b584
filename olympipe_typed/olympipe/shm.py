"""olympipe's ``olympipe.shm``: how its queues carry large items in shared memory.

Here the engine does it by itself (``olympipe_typed._transport``: items of 64 KiB and more
travel through shared-memory segments, unlinked when the run ends); olympipe's ``ShmFrame``
and ``ShmPool``, the framing of its own queue, have no use on this engine.
"""

__all__: list[str] = []
