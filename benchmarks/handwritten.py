"""A hand-written multiprocessing chain: the practical limit the libraries are measured against.

One forked process per stage worker; every link is a one-producer, one-consumer
``multiprocessing.Pipe`` (no locks), carrying pickled batches of items and a ``None`` sentinel at
the end. Each worker of a stage has a link to each worker of the next, and batch j goes through
worker j mod k of every k-worker stage: round-robin at both ends of every link keeps order
without a reorder buffer. With ``shm_slot_bytes``, items are numpy
arrays copied into a ring of shared-memory slots and only (slot, shape, dtype) travels through
the pipe: one copy in and one copy out per hop.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from multiprocessing.shared_memory import SharedMemory

    import numpy.typing as npt

StageFn = Callable[[Any], Any]

_SHM_SLOTS = 4


class PipeLink:
    """Pickled batches through a pipe."""

    def __init__(self) -> None:
        self._recv_end, self._send_end = mp.Pipe(duplex=False)

    def send(self, batch: list[Any] | None) -> None:
        self._send_end.send(batch)

    def recv(self, *, copy: bool = True) -> list[Any] | None:
        del copy  # unpickled items are always the receiver's own
        batch: list[Any] | None = self._recv_end.recv()
        return batch

    def release(self) -> None:
        """Nothing to hand back."""

    def close(self) -> None:
        self._recv_end.close()
        self._send_end.close()


class ShmLink:
    """Arrays through a ring of shared-memory slots; the consumer hands slots back on a pipe."""

    def __init__(self, slot_bytes: int, slots: int = _SHM_SLOTS) -> None:
        from multiprocessing.shared_memory import SharedMemory

        self._slot_bytes = slot_bytes
        self._shm: SharedMemory = SharedMemory(create=True, size=slot_bytes * slots)
        self._recv_end, self._send_end = mp.Pipe(duplex=False)
        self._ack_recv, self._ack_send = mp.Pipe(duplex=False)
        self._free = list(range(slots))
        self._held: list[int] = []

    def send(self, batch: list[Any] | None) -> None:
        import numpy as np

        if batch is None:
            self._send_end.send(None)
            return
        descs: list[tuple[int, tuple[int, ...], str]] = []
        for item in batch:
            if not isinstance(item, np.ndarray):
                msg = "ShmLink carries numpy arrays"
                raise TypeError(msg)
            arr = cast("npt.NDArray[Any]", item)
            if arr.nbytes > self._slot_bytes:
                msg = f"an array of {arr.nbytes} bytes does not fit a {self._slot_bytes}-byte slot"
                raise ValueError(msg)
            while not self._free:
                self._free.append(self._ack_recv.recv())
            slot = self._free.pop()
            view: Any = np.ndarray(
                arr.shape, arr.dtype, buffer=self._shm.buf, offset=slot * self._slot_bytes
            )
            view[...] = arr
            del view
            descs.append((slot, arr.shape, arr.dtype.str))
        self._send_end.send(descs)

    def recv(self, *, copy: bool = True) -> list[Any] | None:
        """The next batch; with ``copy=False``, views into the slots, valid until ``release()``."""
        import numpy as np

        descs: list[tuple[int, tuple[int, ...], str]] | None = self._recv_end.recv()
        if descs is None:
            return None
        out: list[Any] = []
        for slot, shape, dtype in descs:
            view: Any = np.ndarray(
                shape, np.dtype(dtype), buffer=self._shm.buf, offset=slot * self._slot_bytes
            )
            if copy:
                out.append(view.copy())
                self._ack_send.send(slot)
            else:
                out.append(view)
                self._held.append(slot)
            del view
        return out

    def release(self) -> None:
        """Hand back the slots of the last ``recv(copy=False)`` (its views must be dropped)."""
        for slot in self._held:
            self._ack_send.send(slot)
        self._held.clear()

    def close(self) -> None:
        for conn in (self._recv_end, self._send_end, self._ack_recv, self._ack_send):
            conn.close()
        self._shm.close()
        self._shm.unlink()


Link = PipeLink | ShmLink


def _worker(fn: StageFn, first: int, step: int, ins: list[Link], outs: list[Link]) -> None:
    """Batches ``first``, ``first + step``, ... (this worker's share): batch j comes in from
    upstream worker j mod len(ins) and goes out to downstream worker j mod len(outs)."""
    j = first
    while True:
        # Workers read in place (no copy out of shared memory): the output is copied into the
        # next link, then the input slots are handed back.
        link_in = ins[j % len(ins)]
        batch = link_in.recv(copy=False)
        if batch is None:  # batch j does not exist: its worker upstream would have sent it
            for link in ins:  # the other upstream workers' sentinels
                if link is not link_in:
                    link.recv()
            for link in outs:
                link.send(None)
            return
        outs[j % len(outs)].send([fn(x) for x in batch])
        del batch
        link_in.release()
        j += step


def _feed(
    items: Iterable[Any], outs: list[Link], batch_size: int, errors: list[BaseException]
) -> None:
    try:
        j = 0
        batch: list[Any] = []
        for item in items:
            batch.append(item)
            if len(batch) >= batch_size:
                outs[j % len(outs)].send(batch)
                j += 1
                batch = []
        if batch:
            outs[j % len(outs)].send(batch)
    except BaseException as exc:  # reported by the consumer
        errors.append(exc)
    finally:
        for link in outs:
            link.send(None)


def chain(
    stages: Sequence[tuple[StageFn, int]],
    items: Iterable[Any],
    *,
    batch_size: int = 1000,
    shm_slot_bytes: int | None = None,
) -> Iterator[Any]:
    """Run ``items`` through ``stages`` (function, workers), yielding outputs in order."""
    ctx = mp.get_context("fork")

    def new_link() -> Link:
        return PipeLink() if shm_slot_bytes is None else ShmLink(shm_slot_bytes)

    # links[b][p][q]: from worker p of the stage before boundary b (the feeder at b = 0) to
    # worker q of the stage after it (the parent at the last boundary).
    widths = [1, *(w for _, w in stages), 1]
    links = [
        [[new_link() for _ in range(widths[b + 1])] for _ in range(widths[b])]
        for b in range(len(stages) + 1)
    ]
    procs: list[Any] = []
    for i, (fn, workers) in enumerate(stages):
        for k in range(workers):
            ins = [links[i][p][k] for p in range(widths[i])]
            args = (fn, k, workers, ins, links[i + 1][k])
            procs.append(ctx.Process(target=_worker, args=args, daemon=True))
    for proc in procs:
        proc.start()
    errors: list[BaseException] = []
    feeder = threading.Thread(
        target=_feed, args=(items, links[0][0], batch_size, errors), daemon=True
    )
    feeder.start()
    try:
        outs = [row[0] for row in links[-1]]
        j = 0
        while True:
            batch = outs[j % len(outs)].recv()
            if batch is None:
                break
            yield from batch
            j += 1
        for i in range(1, len(outs)):
            outs[(j + i) % len(outs)].recv()
        feeder.join()
        if errors:
            raise errors[0]
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        for boundary in links:
            for row in boundary:
                for link in row:
                    link.close()
