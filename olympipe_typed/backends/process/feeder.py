"""The feeder: reads a source lazily, in the caller, and sends it on in numbered messages."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from ..._errors import SourceError, StageError
from ..._ops import count_items

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..._graph import Node
    from .pipe import PipeEnd
    from .plan import Pipes


from .wire import STOP_POLL, Key, Stopped, Unencodable, Writer, unpicklable

_MAX_BATCH: Final = 1024  # items per feeder message, at most


_MESSAGE_WORK: Final = 0.002  # seconds of work per message the feeder aims at


_FLUSH: Final = 0.002  # how long the feeder waits for a message to fill before sending it


# Sources whose iteration never blocks: read without a watcher.
_CONTAINERS: Final = frozenset({list, tuple, range, str, bytes, bytearray, dict, set, frozenset})


_MESSAGE_BYTES: Final = 2**20  # bytes per message the feeder aims at, at most


# How often the watcher looks while the reader waits in a message of one item (a slow source,
# an HTTP server idle): the reader sends that item itself, the watcher only stands by.
_STANDBY: Final = 0.5


class Feeder:
    """Reads one source lazily and sends it on in numbered messages.

    One thread, the reader, fills each message with ``list.extend`` of an ``islice`` of the
    source (at C speed) and sends it. From a slow source it reads fewer items a message: about
    what the source yields in ``_FLUSH`` seconds, so a slow source's items are not held back.
    An iterator may also pause after a burst, in the middle of a message: a second thread, the
    watcher, sends what the reader has read so far once it has waited ``_FLUSH`` in a stalled
    next(). Nothing is read beyond the message being filled: backpressure reaches the source.
    """

    def __init__(
        self,
        node: Node,
        rank: int,
        writer: Writer,
        *,
        keyed: bool,
        fixed: bool,
        stop: threading.Event,
        costs: dict[str, dict[int, float]],
        stages: int,
        through: list[int] | None = None,
        ramp: int = 1,
        least: int = 1,
    ) -> None:
        self.node, self.rank, self.writer = node, rank, writer
        self.costs, self.stages = costs, stages
        self.through = through or [0]
        self.ramp = ramp
        # Items a message at least: the widest I/O stage's concurrency, for its worker keeps
        # one message's items in flight at once.
        self.least = least
        assert node.source is not None
        # A list, a range...: reading never blocks, nothing to watch. (Not any sized object:
        # a dataset's __getitem__ or a queue wrapper may be slow or block.)
        self.container = node.source.factory is None and type(node.source.data) in _CONTAINERS
        self.keyed = keyed
        self.fixed = fixed  # several sources: equal messages keep them in step (keys align)
        self.stop = stop
        # The message being filled: the reader only appends (inside extend), the watcher only
        # takes from the front, under the lock.
        self.pending: list[Any] = []
        self.lock = threading.Lock()  # one message sent at a time, in order
        self.reading = 0.0  # when the reader started filling ``pending`` (0: not reading)
        self.want = 0  # items the reader asks the source for, for the message being filled
        self.taken = 0  # items the watcher sent out of messages being filled
        self.ended = False  # END sent: nothing more goes out
        self.error: SourceError | StageError | None = None
        self.receivers: list[str] = []  # the stages reading this source, for error messages
        self.item_bytes = 0.0  # pickled size of an item, as the last message measured it
        self.pace = 0.0  # seconds the source took per item, over the last message
        self.seq = 0  # messages sent
        self.index = 0  # items sent
        self.last = 1  # items in the last message sized by cost
        # A journaled run's source yields envelopes of ``weight()`` items each: messages are
        # sized in those items (the stages' costs are per item), then cut into envelopes.
        self.weight = node.source.weight
        name = node.name
        self.threads = [threading.Thread(target=self._read, name=f"feeder-{name}", daemon=True)]
        if not self.container and not fixed:
            self.threads.append(
                threading.Thread(target=self._watch, name=f"source-{name}", daemon=True)
            )

    def start(self) -> None:
        self.threads[0].start()  # the reader starts the watcher: the caller waits for one start

    def join(self, timeout: float) -> None:
        """Wait for the watcher, and for the reader: briefly when it reads an iterator, which
        may be stuck inside a stalled next() (the watcher has ended the stream for it)."""
        for watcher in self.threads[1:]:
            if watcher.ident is not None:  # started (by the reader)
                watcher.join(timeout)
        self.threads[0].join(timeout if self.container else min(timeout, STOP_POLL))

    def is_alive(self) -> bool:
        """Whether a thread of this feeder still runs (a reader stuck in a stalled next())."""
        return any(t.is_alive() for t in self.threads)

    def _size(self) -> int:
        """Items per message: about ``_MESSAGE_WORK`` seconds of the slowest stage's work,
        and at most ``_MESSAGE_BYTES`` of data.

        One item a message until the stages have said what an item costs, so that a
        slow stage's workers share the first items too; then at most twice the last
        size, so that a few cheap first items do not send the rest of the source in one
        message before a costly item has been seen.
        """
        # The slowest worker's: with uneven items, a worker that met only fast ones says little.
        # Copies first (list() of a dict's values is atomic): the caller's thread adds to them.
        slowest = max(
            (c for workers in list(self.costs.values()) for c in list(workers.values())),
            default=None,
        )
        weight = 1 if self.weight is None else max(1, self.weight())
        if slowest is None or len(self.costs) < self.stages:
            if self.least > 1:
                return max(1, self.least // weight)
            self._ramp_up()
            return 1
        by_work = int(_MESSAGE_WORK / max(slowest, 1e-9))
        by_bytes = int(_MESSAGE_BYTES / max(self.item_bytes, 1.0))
        self.last = max(1, min(max(_MAX_BATCH, weight), by_work, by_bytes, 2 * self.last))
        self.last = max(self.last, min(self.least, by_bytes))
        return max(1, self.last // weight)

    def _ramp_up(self) -> None:
        """Until every stage has said what an item costs, keep few one-item messages in flight
        (waiting at most ``STOP_POLL`` for one: an output may have ended early)."""
        deadline = time.monotonic() + STOP_POLL
        while self.seq - min(self.through) >= self.ramp and not self.stop.is_set():
            if len(self.costs) >= self.stages or time.monotonic() > deadline:
                return
            time.sleep(0.0005)

    def _failed(self, exc: BaseException) -> None:
        msg = f"source {self.node.name!r} raised {type(exc).__name__}: {exc}"
        self.error = SourceError(msg)
        self.error.__cause__ = exc

    def _broke(self, exc: BaseException) -> None:
        """The feeder itself failed: end the stream with an error, never quietly."""
        if self.error is None:
            msg = f"reading source {self.node.name!r} failed: {type(exc).__name__}: {exc}"
            self.error = SourceError(msg)
            self.error.__cause__ = exc
        self._end()

    def _read(self) -> None:
        stop, pending, lock = self.stop, self.pending, self.lock
        for watcher in self.threads[1:]:
            watcher.start()
        clock = time.perf_counter
        try:
            assert self.node.source is not None
            try:
                items: Iterator[Any] = iter(self.node.source.open())
            except Exception as exc:
                self._failed(exc)
                return
            while not stop.is_set() and not self.ended:
                size = 64 if self.fixed else self._size()
                if not self.fixed and self.pace > 0:
                    # A slow source: the items it yields in about _FLUSH.
                    size = max(1, min(size, int(_FLUSH / self.pace)))
                taken, started = self.taken, clock()
                self.want = size
                self.reading = started
                failed = False
                try:
                    pending.extend(itertools.islice(items, size))
                except BaseException as exc:  # what was read before is still sent
                    self._failed(exc)
                    failed = True
                self.reading = 0.0
                elapsed = clock() - started
                with lock:
                    read = len(pending) + self.taken - taken
                    self.pace = elapsed / max(read, 1)
                    self._flush()
                if failed or read < size:  # the end of the source
                    break
        except BaseException as exc:  # ours, not the source's: say so rather than end quietly
            self._broke(exc)
        finally:
            with lock:
                self._end()

    def _watch(self) -> None:
        """Send what the reader has read once it has waited ``_FLUSH`` in a stalled next();
        end the stream when the run stops (the reader may never come back from next())."""
        stop, pending, lock, clock = self.stop, self.pending, self.lock, time.perf_counter
        every = _FLUSH
        try:
            while not self.ended and not stop.wait(every):
                started = self.reading
                if not pending:  # a long pause: look less often
                    every = min(2 * every, 8 * _FLUSH if self.want > 1 else _STANDBY)
                    continue
                every = _FLUSH
                if started == 0.0 or clock() - started < _FLUSH:
                    continue
                with lock:
                    if self.reading == started:
                        self.taken += self._flush()
        except BaseException as exc:
            with lock:
                self._broke(exc)
        while not self.ended and stop.is_set():
            if lock.acquire(timeout=STOP_POLL):  # the reader may hold it, blocked in a send
                try:
                    self._end()
                finally:
                    lock.release()

    def _flush(self) -> int:
        """Send what ``pending`` holds as the next message (under the lock); the number of
        items sent."""
        pending = self.pending
        items = pending[:]
        if not items or self.ended:
            return 0
        del pending[: len(items)]  # the reader may be appending behind them
        keys: list[Key] | None = None
        if self.keyed:
            keys = [(i, self.rank) for i in range(self.index, self.index + len(items))]
        self.index += len(items)
        try:
            self.writer.send(self.seq, True, items, keys)
            count = len(items) if self.weight is None else count_items(items, True)
            self.item_bytes = self.writer.encoder.last_size / max(count, 1)
        except Unencodable as exc:  # before the OSErrors: an item's own may be one
            receivers = ", ".join(repr(n) for n in self.receivers)
            where = f"to stage {receivers}" if receivers else "to the caller"
            name = self.receivers[0] if self.receivers else self.node.name
            self.error = unpicklable(name, items, where)
            self.error.__cause__ = exc.__cause__
            self._end()
        except (OSError, Stopped):
            self._end()  # the run is being torn down: the caller knows why
        self.seq += 1
        return len(items)

    def sent(self) -> int:
        """Items sent so far."""
        return self.index

    def _end(self) -> None:
        """Send END, once (under the lock)."""
        if self.ended:
            return
        self.ended = True
        with contextlib.suppress(OSError):
            self.writer.end()
        self.writer.encoder.close()


def is_feeder_end(conn: PipeEnd, plan: Pipes) -> bool:
    """Whether ``conn`` is a pipe end the caller's feeder threads write to."""
    for node in plan.graph.sources:
        for conns in plan.writes.get((node.id, 0), {}).values():
            if conn in conns:
                return True
    return False
