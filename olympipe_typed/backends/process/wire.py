"""Messages between a run's processes: how they are written and read, and the counters in
shared memory that deal them (credits, the reorder window, the stage a fused worker is in)."""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

from ..._errors import StageError
from ..._hints import short_repr
from ..._transport import SHARED, Decoder, Encoder
from .pipe import Waiter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .pipe import PipeEnd
    from .plan import Pipes


END: Final = b"E"  # the end-of-stream marker: one byte, never a valid pickle


TAIL: Final = -1  # the seq of a node's last message: what its flush() emitted


INF: Final = float("inf")


STOP_POLL: Final = 0.1  # how often thread workers, which cannot be killed, check for stop


_PAUSE: Final = 1e-4  # a producer's first pause while it waits for room, at least
_MAX_PAUSE: Final = 2e-3  # ... and its longest
# The longest first pause: a quarter of a message's work (feeder.py aims at 2 ms), so that a
# producer that finds room late still sends before the worker has done its queued message.
_MAX_FIRST_PAUSE: Final = 5e-4
CREDIT: Final = 2  # messages queued or in work per worker of an ordered=False stage, at most
# A feeder waiting for room sleeps until a worker says it has done a message (Credits), or this
# long at most: room can also come from the planner giving a group more workers at work.
_WAKE_WAIT: Final = 0.01


# The reorder window (see Window): messages, items and bytes past the oldest one a reader
# that restores order still waits for.
_WINDOW_MESSAGES: Final = 64


_WINDOW_ITEMS: Final = 16384


_WINDOW_BYTES: Final = 64 * 2**20


Key = tuple[float, ...]


Message = tuple[int, bool, list[Any], list[Key] | None]


_SLOT: Final = 4  # counters per pipe: messages sent, messages done, items sent, items done


class Credits:
    """What is queued on each pipe into the stages that deal messages to a free worker or
    bound their queues (queue_size), counted in shared memory; and how far each reader that
    restores order has come, for the reorder window.

    Each pipe has counters of messages and items sent, written only by its producer, and done,
    written only by its consumer (one writer each: no locks; aligned 8-byte stores are atomic
    on x86-64). A producer waits while the worker it sends to has ``queue_size`` items queued
    (any message fits an empty queue), or, dealing, while every worker has two messages.
    After the pipes' counters: each reorderer's next message number (written by it alone),
    then each dealt node's workers at work (written by the caller's planner).

    A producer does not poll for room: each one (a source's feeder, or a worker that feeds
    other workers) sleeps on a FIFO of its own (``wakers``), into which each worker it feeds
    writes a byte whenever it has done one of its messages (after counting it, so the
    producer that wakes sees the room). A feeder that waits for room item after item (items
    of 40 ms, say) woke 20 times a message polling, and each wake-up took a core from a
    worker; now it wakes once, as soon as there is room. A worker that polled slept up to
    2 ms past the moment a cheap item made room, while the worker it feeds ran dry.

    The caller makes the FIFOs and holds every one open for reading until the run ends, so
    that a worker can always open its write ends (a FIFO with no reader refuses them). A
    producer that has no FIFO (a worker started after the files were removed) polls.
    """

    def __init__(
        self,
        path: str,
        slots: dict[tuple[int, int, int, int], int],
        limits: dict[int, int],
        dealt: set[int],
        reorderers: list[int],
        active: dict[int, int],
        ooo: set[int],
    ) -> None:
        self.path = path
        self.slots = slots  # (producer node, its worker, consumer node, its worker) -> slot
        self.limits = limits  # consumer node -> items queued per worker, at most
        self.dealt = dealt  # consumer nodes whose messages go to a free worker
        self.reorderers = reorderers  # readers restoring order (-1 - i: the caller's output i)
        self.active = active  # dealt node -> its slot of workers at work
        self.ooo = ooo  # nodes whose outputs leave out of order
        # The producers, (node, worker), that sleep on a FIFO for room: all that count.
        self.wakers = frozenset((p, pw) for p, pw, _, _ in slots)
        self._wake_r: dict[tuple[int, int], int] = {}  # producer -> its FIFO's read end
        self._wake_w: dict[tuple[int, int], int] = {}  # producer -> the FIFO's write end
        self._wake_at: dict[int, int] = {}  # slot -> the write end to tell when done
        self._waiters: dict[tuple[int, int], Waiter] = {}  # producer -> its wait on the FIFO
        self._opening = threading.Lock()
        self.into: dict[tuple[int, int], list[int]] = {}  # (consumer, worker) -> its slots
        for (_, _, child, cw), slot in slots.items():
            self.into.setdefault((child, cw), []).append(slot)
        self.released_at = _SLOT * len(slots)  # where the reorderers' counters start
        self._counts: memoryview | None = None
        # consumer node -> this process's first pause when it waits for room: half its last
        # wait, so that a wait of a few ms (a worker busy with costly items) takes two looks,
        # not five; the worker has a message queued meanwhile.
        self._pause: dict[int, float] = {}

    def __getstate__(self) -> tuple[object, ...]:
        return (
            self.path,
            self.slots,
            self.limits,
            self.dealt,
            self.reorderers,
            self.active,
            self.ooo,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    @staticmethod
    def create(path: str, plan: Pipes) -> Credits | None:
        """The ledger a run needs, if any; its file is made by ``make`` (see there)."""
        if not plan.credit_slots and not plan.reorderers:
            return None
        dealt = sorted(plan.dealt)
        base = len(plan.reorderers)
        active = {node: base + i for i, node in enumerate(dealt)}
        return Credits(
            path,
            plan.credit_slots,
            plan.limits,
            plan.dealt,
            plan.reorderers,
            active,
            plan.ooo,
        )

    def make(self, active: dict[int, int]) -> None:
        """Make the file, with each dealt node's workers at work. Called once the workers are
        started (they map it at their first message): a caller killed from then on has workers
        that remove it; a moment earlier, there would be none to. The producers' FIFOs come
        first, opened for reading here (the feeders, and thread workers, read these ends): a
        worker opens them once it has mapped the counters."""
        for producer in self.wakers:
            fifo = self.wake_path(producer)
            os.mkfifo(fifo, 0o600)
            self._wake_r[producer] = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            self._waiters[producer] = Waiter()
        _make(self.path, 8 * (_SLOT * len(self.slots) + len(self.reorderers) + len(self.active)))
        for node, workers in active.items():
            self.set_active(node, workers)

    def counts(self) -> memoryview:
        if self._counts is None:
            size = 8 * (_SLOT * len(self.slots) + len(self.reorderers) + len(self.active))
            self._counts = _map(self.path, size)
        return self._counts

    def wake_path(self, producer: tuple[int, int]) -> str:
        """The FIFO a worker writes to when it has done a message from ``producer``."""
        node, worker = producer
        return f"{self.path}.wake{node}-{worker}"

    def attach(
        self,
        stop: threading.Event | None,
        slots: Iterable[int] = (),
        me: tuple[int, int] | None = None,
    ) -> None:
        """Map the file now (a worker at its start), waiting for the caller to make it; then
        open the FIFOs, which exist by then: for writing, those of the producers that send
        into ``slots`` (the worker's own); for reading, the one of ``me``, the worker, if it
        feeds others."""
        _attach(self.counts, stop)
        mine = set(slots)
        producers = {(p, pw) for (p, pw, _, _), slot in self.slots.items() if slot in mine}
        with self._opening:  # thread workers share the caller's ledger: one write end each
            if me is not None and me in self.wakers and me not in self._wake_r:
                with contextlib.suppress(OSError):  # removed: a worker started late polls
                    self._wake_r[me] = os.open(self.wake_path(me), os.O_RDONLY | os.O_NONBLOCK)
                    self._waiters[me] = Waiter()
            for producer in producers:
                if producer in self._wake_w:
                    continue
                path = self.wake_path(producer)
                try:
                    self._wake_w[producer] = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # the run is ending: nobody waits any more
                    continue
            self._wake_at = {
                slot: self._wake_w[(p, pw)]
                for (p, pw, _, _), slot in self.slots.items()
                if (p, pw) in self._wake_w
            }

    def unlink(self) -> None:
        """Remove the files (counters, FIFOs): open ends and mappings outlive them."""
        for path in (self.path, *(self.wake_path(producer) for producer in self._wake_r)):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        """Unmap the counters (the mapping holds a file descriptor of its own), and close the
        FIFOs' ends."""
        _unmap(self._counts)
        self._counts = None
        with self._opening:
            for fd in (*self._wake_r.values(), *self._wake_w.values()):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r, self._wake_w, self._wake_at, self._waiters = {}, {}, {}, {}

    def set_active(self, node: int, workers: int) -> None:
        self.counts()[self.released_at + self.active[node]] = workers

    def get_active(self, node: int, k: int) -> int:
        slot = self.active.get(node)
        if slot is None:
            return k
        return max(1, min(k, self.counts()[self.released_at + slot]))

    def release(self, reader: int, seq: int) -> None:
        """Reader ``reader`` has handed on every message before ``seq``."""
        self.counts()[self.released_at + self.reorderers.index(reader)] = seq

    def released(self) -> int:
        """The first message some reorderer still waits for."""
        c, at = self.counts(), self.released_at
        return min((c[at + i] for i in range(len(self.reorderers))), default=0)

    def queued(self, child: int, worker: int) -> tuple[int, int]:
        """(messages, items) queued for one worker, from every producer."""
        c = self.counts()
        messages = items = 0
        for s in self.into[(child, worker)]:
            at = _SLOT * s
            messages += c[at] - c[at + 1]
            items += c[at + 2] - c[at + 3]
        return messages, items

    def send(
        self,
        me: tuple[int, int],
        child: int,
        k: int,
        seq: int,
        n: int,
        stop: threading.Event | None,
    ) -> int:
        """The worker of ``child`` that gets a message of ``n`` items, counted as sent: worker
        ``seq % k`` (in turn), or the least busy one (dealt); waits until it has room."""
        limit = self.limits.get(child)
        delay = self._pause.get(child, _PAUSE)
        waited_from = 0.0
        while True:
            if child in self.dealt:
                active = self.get_active(child, k)
                best, load = seq % active, (INF, INF)
                for i in range(active):
                    cw = (seq + i) % active
                    messages, items = self.queued(child, cw)
                    if (messages, items) < load:
                        best, load = cw, (messages, items)
                    if messages == 0:
                        break
                room = load[0] < CREDIT
            else:
                best = seq % k
                load = self.queued(child, best)
                room = True
            if limit is not None and load[1] and load[1] + n > limit:
                room = False
            if room:
                break
            if stop is not None and stop.is_set():
                raise Stopped
            waiter = self._waiters.get(me)
            if waiter is not None and self._woken(me, waiter):
                continue  # a worker has done a message, or the wait is over: look again
            if not waited_from:
                waited_from = time.monotonic()
            time.sleep(delay)
            delay = min(2 * delay, _MAX_PAUSE)
        if waited_from:
            waited = time.monotonic() - waited_from
            self._pause[child] = min(_MAX_FIRST_PAUSE, max(_PAUSE, waited / 2))
        at = _SLOT * self.slots[(*me, child, best)]
        c = self.counts()
        c[at] += 1
        c[at + 2] += n
        return best

    def _woken(self, me: tuple[int, int], waiter: Waiter) -> bool:
        """Sleep until a worker says it has done a message (True), or ``_WAKE_WAIT`` has passed
        (True: look again); False when no worker holds the FIFO open any more (poll would
        return at once from then on: pause instead), or the run has closed it."""
        fd = self._wake_r.get(me)
        if fd is None:
            return False
        if not waiter.wait([fd], _WAKE_WAIT):
            return True
        woke = False
        with contextlib.suppress(OSError):  # BlockingIOError: all read; EBADF: closed
            while os.read(fd, 4096):  # every byte so far: what came meanwhile too
                woke = True
        return woke

    def done(self, slot: int, n: int) -> None:
        at = _SLOT * slot
        c = self.counts()
        c[at + 1] += 1
        c[at + 3] += n
        if self._wake_at:  # a feeder may be waiting for room: wake it
            with self._opening:  # not while the run closes the FIFO (its number reused)
                fd = self._wake_at.get(slot)
                if fd is not None:
                    with contextlib.suppress(OSError):  # full: it has not looked for a while
                        os.write(fd, b"\0")


def _make(path: str, size: int) -> None:
    """The file at ``path``, ``size`` bytes of zeros, appearing whole (workers wait for it)."""
    partial = f"{path}.part"
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    os.rename(partial, path)


def _attach(mapper: Callable[[], memoryview], stop: threading.Event | None) -> None:
    """Call ``mapper`` until the file it maps exists (the caller makes it once every worker
    is started; should the caller die first, the worker's watch ends the worker)."""
    delay = 1e-4
    while True:
        try:
            mapper()
        except FileNotFoundError:
            if stop is not None and stop.is_set():
                raise Stopped from None
            time.sleep(delay)
            delay = min(2 * delay, 0.01)
        else:
            return


def _map(path: str, size: int) -> memoryview:
    """The file at ``path`` mapped in memory, as 8-byte integers."""
    import mmap

    fd = os.open(path, os.O_RDWR)
    try:
        return memoryview(mmap.mmap(fd, size)).cast("q")
    finally:
        os.close(fd)


def _unmap(view: memoryview | None) -> None:
    if view is None:
        return
    mapping = view.obj
    view.release()
    if isinstance(mapping, memoryview):  # the cast's source view
        inner = mapping.obj
        mapping.release()
        mapping = inner
    close = getattr(mapping, "close", None)
    if close is not None:
        with contextlib.suppress(BufferError):
            close()


class Window:
    """The reorder window, kept where messages enter out-of-order nodes (the feeder, or an
    in-order node): message ``seq`` waits while the messages sent since the first one some
    reorderer still waits for number ``_WINDOW_MESSAGES``, or hold ``_WINDOW_ITEMS`` items or
    ``_WINDOW_BYTES`` bytes. So a reorderer holds at most that much, however slow one item is,
    and every message inside the window can always move (no deadlock)."""

    def __init__(self, ledger: Credits) -> None:
        self.ledger = ledger
        self.sent: collections.deque[tuple[int, int, int]] = collections.deque()
        self.items = self.bytes = 0

    def wait(self, seq: int, n: int, nbytes: int, stop: threading.Event | None) -> None:
        delay = 1e-4
        sent = self.sent
        while True:
            released = self.ledger.released()
            while sent and sent[0][0] < released:
                _, i, b = sent.popleft()
                self.items -= i
                self.bytes -= b
            if not sent or (
                seq - released < _WINDOW_MESSAGES
                and self.items + n <= _WINDOW_ITEMS
                and self.bytes + nbytes <= _WINDOW_BYTES
            ):
                break
            if stop is not None and stop.is_set():
                raise Stopped
            time.sleep(delay)
            delay = min(2 * delay, 2e-3)
        sent.append((seq, n, nbytes))
        self.items += n
        self.bytes += nbytes


class Writer:
    """Sends each message to the right worker of every child (and to the caller, for outputs)."""

    def __init__(
        self,
        targets: dict[int, list[PipeEnd]],
        ranks: dict[int, int] | None,
        prefix: str,
        ledger: Credits | None = None,
        me: tuple[int, int] = (-1, 0),
        stop: threading.Event | None = None,
    ) -> None:
        self.encoder = Encoder(prefix)  # large buffers travel through shared memory
        self.targets = list(targets.items())
        self.ranks = ranks  # child -> this node's rank among its children (keyed graphs only)
        self.ledger = ledger
        self.me = me  # (node, worker) of the writer
        self.stop = stop  # threads: the run is being torn down
        # An in-order writer feeding an out-of-order node keeps the reorder window.
        self.window: Window | None = None
        feeds_ooo = ledger is not None and any(child in ledger.ooo for child, _ in self.targets)
        if ledger is not None and feeds_ooo and me[0] not in ledger.ooo:
            self.window = Window(ledger)

    def _payload(self, msg: Message, child: int, shared: bytes | None) -> bytes:
        """``msg`` encoded for one child: a message through shared memory is read once, so
        only an in-band encoding is shared between children."""
        seq, final, items, keys = msg
        if keys is not None and self.ranks is not None and child in self.ranks:
            rank = self.ranks[child]
            return self._encode((seq, final, items, [(*k, rank) for k in keys]))
        if shared is not None and not shared.startswith(SHARED):
            return shared
        return self._encode(msg)

    def _encode(self, msg: Message) -> bytes:
        try:
            return self.encoder.encode(msg)
        except Exception as exc:  # pickle's errors, and any an item's __reduce__ raises
            # An OSError from an item's __getstate__ (a file gone) is the item's failure, not
            # a closed pipe: it must never pass for the end of the run.
            raise Unencodable from exc

    def send(self, seq: int, final: bool, items: list[Any], keys: list[Key] | None) -> None:
        shared: bytes | None = None
        windowed = False
        for child, conns in self.targets:
            payload = shared = self._payload((seq, final, items, keys), child, shared)
            ledger = self.ledger
            if ledger is not None and (child in ledger.dealt or child in ledger.limits):
                if self.window is not None and child in ledger.ooo and not windowed:
                    windowed = True
                    self.window.wait(seq, len(items), self.encoder.last_size, self.stop)
                cw = ledger.send(self.me, child, len(conns), seq, len(items), self.stop)
                conns[cw].send_bytes(payload)
            else:
                conns[seq % len(conns)].send_bytes(payload)

    def tail(self, items: list[Any], keys: list[Key] | None) -> None:
        """The last message: to the first worker of each child (and to the caller)."""
        shared: bytes | None = None
        for child, conns in self.targets:
            payload = shared = self._payload((TAIL, True, items, keys), child, shared)
            conns[0].send_bytes(payload)

    def end(self) -> None:
        for _, conns in self.targets:
            for conn in conns:
                conn.send_bytes(END)


class Where:
    """Which stage each worker of a fused group is in, in shared memory: a worker that dies
    is reported as its stage's, as written, never as the group's."""

    def __init__(self, path: str, slots: int) -> None:
        self.path = path
        self.slots = slots
        self._cells: memoryview | None = None

    def __getstate__(self) -> tuple[object, ...]:
        return self.path, self.slots

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def make(self) -> None:
        """Make the file, once the workers are started (as ``Credits.make``)."""
        _make(self.path, 8 * max(1, self.slots))

    def cells(self) -> memoryview:
        if self._cells is None:
            self._cells = _map(self.path, 8 * max(1, self.slots))
        return self._cells

    def attach(self, stop: threading.Event | None) -> None:
        """Map the file now (a worker at its start), waiting for the caller to make it."""
        _attach(self.cells, stop)

    def close(self) -> None:
        _unmap(self._cells)
        self._cells = None

    def setter(self, slot: int) -> Callable[[int], None]:
        def tell(stage: int) -> None:  # mapped at the first call: the file exists by then
            self.cells()[slot] = stage

        return tell

    def __getitem__(self, slot: int) -> int:
        return int(self.cells()[slot])


class Stopped(Exception):
    """The run is being torn down (thread backend): leave quietly."""


class Unencodable(Exception):
    """An item of a message could not be pickled; ``__cause__`` says why."""


class Undecodable(Exception):
    """A message could not be unpickled; ``__cause__`` says why."""


def unpicklable(stage: str, items: list[Any], where: str) -> StageError:
    """A StageError naming the stage and the first of ``items`` that pickle refuses."""
    for item in items:
        try:
            pickle.dumps(item, protocol=5)
        except Exception as exc:  # this is the item we are looking for
            msg = f"cannot pickle this item to send it {where}: {type(exc).__name__}: {exc}"
            return StageError(stage, short_repr(item), msg)
    return StageError(stage, "<unknown>", f"cannot pickle a message to send it {where}")


class Control:
    """A worker's pipe to the caller, for reports: one writer at a time (the stage's own
    threads may log while the worker reports its numbers)."""

    def __init__(self, conn: PipeEnd) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, report: tuple[object, ...]) -> None:
        data = pickle.dumps(report, protocol=5)
        with self.lock:
            self.conn.send_bytes(data)


def recv(conn: PipeEnd, decoder: Decoder, *, borrow: bool = False) -> Message | None:
    data = conn.recv_bytes()  # EOFError, OSError: the writer is gone
    if data == END:
        return None
    try:
        msg = cast("Message", decoder.decode(data, borrow=borrow))
    except Exception as exc:  # an item's class missing here, a __setstate__ that raises...
        # ...even EOFError, which must not pass for a closed pipe (the run would hang).
        raise Undecodable from exc
    return msg


def unreadable(stage: str, item: str, exc: Undecodable) -> StageError:
    """A StageError for an item of ``stage`` (described by ``item``) that cannot be unpickled."""
    cause = exc.__cause__
    err = StageError(stage, item, f"{type(cause).__name__}: {cause}")
    err.__cause__ = cause
    return err
