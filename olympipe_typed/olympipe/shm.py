"""olympipe's ``olympipe.shm``: how its queues carry large items in shared memory.

Here the engine does it by itself (``olympipe_typed._transport``: the large buffers of an item,
256 KiB or more of them, travel through shared-memory segments that the run removes when it
ends); olympipe's ``ShmFrame`` and ``ShmPool``, the framing of its own queue, have no use on
this engine.
"""

__all__: list[str] = []
