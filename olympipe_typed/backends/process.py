"""The process and thread backends: every stage worker runs on its own, chained by pipes.

    feeder --pipe--> [stage A w0] --pipe--> [stage B w0] --pipe--> collector (caller)
      (thread)   \\-> [stage A w1] --pipe--/                         (the run generator)

Data moves in *messages*: ``(seq, final, items, keys)``. The feeder cuts the
source into messages numbered 0, 1, 2, ...; every worker turns each message it
receives into exactly one message with the same ``seq`` (maybe empty), so a
message number means the same slice of the source at every node.

Order without reorder buffers: a stage with ``k`` workers gives message ``seq``
to worker ``seq % k``, and there is one pipe per (producer worker, consumer
worker) pair. A reader that wants message ``seq`` knows the one pipe it will
arrive on, so it reads exactly that pipe; memory stays bounded by the pipes'
capacity, however slow one item is.

End of stream: a worker that finds ``END`` where it expected message ``e``
sends one last message numbered ``e`` (what ``flush()`` emits: a partial batch,
a reduction) and then ``END`` to every pipe it writes. With ``m`` workers the
last messages are exactly ``S .. S+m-1``, so downstream numbering stays
contiguous.

Fan-in (``|`` fan-out merged, gather): the merging worker reads message
``seq`` from each parent and sorts their items by *key*. Keys exist only in
graphs that merge: ``(source index, source rank)`` at the source, ``+ (j,)``
for the j-th output of a flat or batching stage, ``+ (b,)`` when entering the
b-th child of a node with several children. Sorting by key reproduces the
inline backend's depth-first order exactly.

Time-based stages (timeouts, temporal batches) wake up while waiting and send
*partial* messages (``final=False``) for the ``seq`` they are waiting on.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Final, cast

from .._errors import PipelineError, SourceError, StageError, WorkerDied
from .._failures import Failure
from .._hints import short_repr
from .._ops import count_items, log_skipped
from .._planner import FusedOp, FusedProcessor, PlanMode, cores, physical
from .._report import WorkerStats
from .._transport import SHARED, SHM_DIR, Decoder, Encoder, cleanup

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .._graph import Graph, Node
    from .._ops import Op, Processor
    from .._planner import Group
    from .._report import Recorder

END: Final = b"E"  # the end-of-stream marker: one byte, never a valid pickle
TAIL: Final = -1  # the seq of a node's last message: what its flush() emitted
INF: Final = float("inf")
_MAX_BATCH: Final = 1024  # items per feeder message, at most
_MESSAGE_WORK: Final = 0.002  # seconds of work per message the feeder aims at
_REPORT_EVERY: Final = 0.1  # seconds between a worker's reports of its cost per item (and progress)
_FIRST_REPORT: Final = 0.00125  # ... at first: the interval doubles from this one
_FLUSH: Final = 0.002  # how long the feeder waits for a message to fill before sending it
# Sources whose iteration never blocks: read without a watcher.
_CONTAINERS: Final = frozenset({list, tuple, range, str, bytes, bytearray, dict, set, frozenset})
_MESSAGE_BYTES: Final = 2**20  # bytes per message the feeder aims at, at most
_RUNS: Final = itertools.count()  # numbers this process's runs, for shared-memory names
_WATCH_EVERY: Final = 0.5  # how often a worker checks that its parent still lives
_STOP_POLL: Final = 0.1  # how often thread workers, which cannot be killed, check for stop
_CPU_SAMPLE: Final = 0.01  # a worker reads its CPU time around a message this often, at most
_READ_SAMPLE: Final = 4  # a worker counts one blocking read in this many for the queue's fill
_POLL: Final = 0.05  # how often the caller checks on workers and the feeders when idle
_SECOND_PRESS: Final = 1.0  # a Ctrl-C this soon after the one that stopped a run is held
_GRACE: Final = 30.0  # how long finished workers get to run close() before being stopped
_CREDIT: Final = 2  # messages queued or in work per worker of an ordered=False stage, at most
# The reorder window (see _Window): messages, items and bytes past the oldest one a reader
# that restores order still waits for.
_WINDOW_MESSAGES: Final = 64
_WINDOW_ITEMS: Final = 65536
_WINDOW_BYTES: Final = 64 * 2**20
_REPLAN_EVERY: Final = 0.5  # seconds between the planner's looks at the groups' costs
_RAMP: Final = 4  # one-item messages in flight per stage worker while stages have not said
# what an item costs: enough for every worker to start, few enough not to flood the pipes

Key = tuple[float, ...]
Message = tuple[int, bool, list[Any], list[Key] | None]


# --- the plan: who reads and writes which pipe ---


class _Plan:
    """Pipes for one run: for each node, the connections its workers read and write.

    ``graph`` is the physical graph (``_planner.physical``): a fused group is one node.
    """

    def __init__(self, graph: Graph, ctx: Any, groups: list[Group | None]) -> None:
        self.graph = graph
        self.groups = groups
        self.keyed = any(len(n.parents) > 1 for n in graph.nodes)
        self.workers = {
            n.id: 1 if g is None else g.workers for n, g in zip(graph.nodes, groups, strict=True)
        }
        # Free nodes take messages in arrival order: an ordered=False stage with several
        # workers, and everything after it (once order is given up, there is none to keep).
        self.free: dict[int, bool] = {}
        # Nodes downstream of a time-based stage, whose messages may come in parts (partial).
        partial: dict[int, bool] = {}
        # Ordered nodes whose several workers each take the next message when free, and send
        # its outputs under its number: their readers restore the order (``_Reorder``).
        self.ooo: set[int] = set()
        for n in graph.nodes:
            unordered = n.op is not None and not n.op.options.ordered and self.workers[n.id] > 1
            self.free[n.id] = unordered or any(self.free[p] for p in n.parents)
            partial[n.id] = (n.op is not None and n.op.seconds is not None) or any(
                partial[p] for p in n.parents
            )
            if (
                self.workers[n.id] > 1
                and not self.free[n.id]
                and not self.keyed
                and not any(partial[p] for p in n.parents)
            ):
                self.ooo.add(n.id)
        # Readers of out-of-order nodes that restore order: one-worker nodes, and the caller's
        # outputs (by -1 - index). Each has a slot where it says how far it has come.
        self.reorderers = [
            n.id
            for n in graph.nodes
            if self.workers[n.id] == 1 and any(p in self.ooo for p in n.parents)
        ] + [
            -1 - i
            for i, node_id in enumerate(graph.outputs)
            if node_id in self.ooo and not self.free[node_id]
        ]
        # reads[(node, worker)][parent] -> connections indexed by parent worker
        self.reads: dict[tuple[int, int], dict[int, list[Connection]]] = {}
        # writes[(node, worker)][child] -> connections indexed by child worker
        self.writes: dict[tuple[int, int], dict[int, list[Connection]]] = {}
        # the caller reads each output node: outputs[index] -> connections by worker
        self.outputs: list[list[Connection]] = []
        self.child_side: list[Connection] = []  # ends the caller must close after start
        self.credit_slots: dict[tuple[int, int, int, int], int] = {}
        # Stages whose workers take at most this many queued items each (queue_size).
        self.limits = {
            n.id: n.op.options.queue_size
            for n in graph.nodes
            if n.op is not None and n.op.options.queue_size is not None
        }
        # Stages with several workers whose messages go to a free worker: unordered ones, and
        # ordered ones whose readers restore the order.
        self.dealt = {
            n.id
            for n in graph.nodes
            if (self.free[n.id] or n.id in self.ooo) and self.workers[n.id] > 1
        }
        # Workers at work in each dealt node at the start (the planner moves auto groups').
        self.active = {
            n: self.workers[n] if groups[n] is None else groups[n].history[-1][1]  # type: ignore[union-attr]
            for n in self.dealt
        }
        for node in graph.nodes:
            for child_id in node.children:
                self._connect(node.id, child_id, ctx)
        for node_id in graph.outputs:
            conns: list[Connection] = []
            for w in range(self.workers[node_id]):
                r, s = ctx.Pipe(duplex=False)
                self.writes.setdefault((node_id, w), {}).setdefault(
                    -1 - len(self.outputs), []
                ).append(s)
                self.child_side.append(s)
                conns.append(r)
            self.outputs.append(conns)

    def _connect(self, parent: int, child: int, ctx: Any) -> None:
        for pw in range(self.workers[parent]):
            for cw in range(self.workers[child]):
                r, s = ctx.Pipe(duplex=False)
                self.writes.setdefault((parent, pw), {}).setdefault(child, []).append(s)
                self.reads.setdefault((child, cw), {}).setdefault(parent, []).append(r)
                self.child_side += [r, s]
                if child in self.dealt or child in self.limits:
                    self.credit_slots[(parent, pw, child, cw)] = len(self.credit_slots)

    def mode(self, node: Node) -> str:
        """How the node's workers read: "free" (arrival order, renumbered), "dealt" (arrival
        order, numbers kept), "reorder" (in number order, from an out-of-order parent) or
        "seq" (message ``seq`` from the one pipe that carries it)."""
        if self.free[node.id]:
            return "free"
        if node.id in self.ooo:
            return "dealt"
        if node.id in self.reorderers:
            return "reorder"
        return "seq"


# --- reading and writing messages ---


_SLOT: Final = 4  # counters per pipe: messages sent, messages done, items sent, items done


class _Credits:
    """What is queued on each pipe into the stages that deal messages to a free worker or
    bound their queues (queue_size), counted in shared memory; and how far each reader that
    restores order has come, for the reorder window.

    Each pipe has counters of messages and items sent, written only by its producer, and done,
    written only by its consumer (one writer each: no locks; aligned 8-byte stores are atomic
    on x86-64). A producer waits while the worker it sends to has ``queue_size`` items queued
    (any message fits an empty queue), or, dealing, while every worker has two messages.
    After the pipes' counters: each reorderer's next message number (written by it alone),
    then each dealt node's workers at work (written by the caller's planner).
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
        self.into: dict[tuple[int, int], list[int]] = {}  # (consumer, worker) -> its slots
        for (_, _, child, cw), slot in slots.items():
            self.into.setdefault((child, cw), []).append(slot)
        self.released_at = _SLOT * len(slots)  # where the reorderers' counters start
        self._counts: memoryview | None = None

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
    def create(path: str, plan: _Plan) -> _Credits | None:
        if not plan.credit_slots and not plan.reorderers:
            return None
        dealt = sorted(plan.dealt)
        base = len(plan.reorderers)
        active = {node: base + i for i, node in enumerate(dealt)}
        size = 8 * (_SLOT * len(plan.credit_slots) + base + len(dealt))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        ledger = _Credits(
            path, plan.credit_slots, plan.limits, plan.dealt, plan.reorderers, active, plan.ooo
        )
        for node in dealt:
            ledger.set_active(node, plan.active[node])
        return ledger

    def counts(self) -> memoryview:
        if self._counts is None:
            size = 8 * (_SLOT * len(self.slots) + len(self.reorderers) + len(self.active))
            self._counts = _map(self.path, size)
        return self._counts

    def close(self) -> None:
        """Unmap the counters (the mapping holds a file descriptor of its own)."""
        _unmap(self._counts)
        self._counts = None

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
        delay = 1e-4
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
                room = load[0] < _CREDIT
            else:
                best = seq % k
                load = self.queued(child, best)
                room = True
            if limit is not None and load[1] and load[1] + n > limit:
                room = False
            if room:
                break
            if stop is not None and stop.is_set():
                raise _Stopped
            time.sleep(delay)
            delay = min(2 * delay, 2e-3)
        at = _SLOT * self.slots[(*me, child, best)]
        c = self.counts()
        c[at] += 1
        c[at + 2] += n
        return best

    def done(self, slot: int, n: int) -> None:
        at = _SLOT * slot
        c = self.counts()
        c[at + 1] += 1
        c[at + 3] += n


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


class _Window:
    """The reorder window, kept where messages enter out-of-order nodes (the feeder, or an
    in-order node): message ``seq`` waits while the messages sent since the first one some
    reorderer still waits for number ``_WINDOW_MESSAGES``, or hold ``_WINDOW_ITEMS`` items or
    ``_WINDOW_BYTES`` bytes. So a reorderer holds at most that much, however slow one item is,
    and every message inside the window can always move (no deadlock)."""

    def __init__(self, ledger: _Credits) -> None:
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
                raise _Stopped
            time.sleep(delay)
            delay = min(2 * delay, 2e-3)
        sent.append((seq, n, nbytes))
        self.items += n
        self.bytes += nbytes


class _Writer:
    """Sends each message to the right worker of every child (and to the caller, for outputs)."""

    def __init__(
        self,
        targets: dict[int, list[Connection]],
        ranks: dict[int, int] | None,
        prefix: str,
        ledger: _Credits | None = None,
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
        self.window: _Window | None = None
        feeds_ooo = ledger is not None and any(child in ledger.ooo for child, _ in self.targets)
        if ledger is not None and feeds_ooo and me[0] not in ledger.ooo:
            self.window = _Window(ledger)

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
            raise _Unencodable from exc

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


class _Where:
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

    @staticmethod
    def create(path: str, slots: int) -> _Where:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, 8 * max(1, slots))
        finally:
            os.close(fd)
        return _Where(path, slots)

    def cells(self) -> memoryview:
        if self._cells is None:
            self._cells = _map(self.path, 8 * max(1, self.slots))
        return self._cells

    def close(self) -> None:
        _unmap(self._cells)
        self._cells = None

    def setter(self, slot: int) -> Callable[[int], None]:
        cells = self.cells()

        def tell(stage: int) -> None:
            cells[slot] = stage

        return tell

    def __getitem__(self, slot: int) -> int:
        return int(self.cells()[slot])


class _Stopped(Exception):
    """The run is being torn down (thread backend): leave quietly."""


class _Unencodable(Exception):
    """An item of a message could not be pickled; ``__cause__`` says why."""


class _Undecodable(Exception):
    """A message could not be unpickled; ``__cause__`` says why."""


def _unpicklable(stage: str, items: list[Any], where: str) -> StageError:
    """A StageError naming the stage and the first of ``items`` that pickle refuses."""
    for item in items:
        try:
            pickle.dumps(item, protocol=5)
        except Exception as exc:  # this is the item we are looking for
            msg = f"cannot pickle this item to send it {where}: {type(exc).__name__}: {exc}"
            return StageError(stage, short_repr(item), msg)
    return StageError(stage, "<unknown>", f"cannot pickle a message to send it {where}")


class _Control:
    """A worker's pipe to the caller, for reports: one writer at a time (the stage's own
    threads may log while the worker reports its numbers)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, report: tuple[object, ...]) -> None:
        data = pickle.dumps(report, protocol=5)
        with self.lock:
            self.conn.send_bytes(data)


def _forward_logs(control: _Control, stage: str, level: int) -> None:
    """Send this worker process's log records to the caller, at the caller's level."""
    import logging

    class LogForwarder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                record.stage = stage
                if record.exc_info and record.exc_text is None:
                    record.exc_text = logging.Formatter().formatException(record.exc_info)
                attrs = dict(record.__dict__)
                attrs.update(msg=record.getMessage(), args=None, exc_info=None)
                control.send(("log", attrs))
            except Exception:
                self.handleError(record)

    root = logging.getLogger()
    for handler in root.handlers[:]:  # inherited through fork: the caller's handlers
        root.removeHandler(handler)
    root.addHandler(LogForwarder())
    root.setLevel(level)


def _caller_log_level() -> int | None:
    """The level workers log at: the caller's, if it uses logging at all.

    A caller that never imported logging has no handlers to forward to: its
    workers then log as it would, to stderr, and nobody pays for the import.
    """
    logging = sys.modules.get("logging")
    return None if logging is None else int(logging.getLogger().getEffectiveLevel())


def _recv(conn: Connection, decoder: Decoder, *, borrow: bool = False) -> Message | None:
    data = conn.recv_bytes()  # EOFError, OSError: the writer is gone
    if data == END:
        return None
    try:
        msg = cast("Message", decoder.decode(data, borrow=borrow))
    except Exception as exc:  # an item's class missing here, a __setstate__ that raises...
        # ...even EOFError, which must not pass for a closed pipe (the run would hang).
        raise _Undecodable from exc
    return msg


def _unreadable(stage: str, item: str, exc: _Undecodable) -> StageError:
    """A StageError for an item of ``stage`` (described by ``item``) that cannot be unpickled."""
    cause = exc.__cause__
    err = StageError(stage, item, f"{type(cause).__name__}: {cause}")
    err.__cause__ = cause
    return err


# --- one worker ---


def _worker_main(
    op_arg: Op | bytes,
    name: str,
    worker: int,
    count: int,
    reads: list[list[Connection]],
    writes: dict[int, list[Connection]],
    ranks: dict[int, int] | None,
    control_conn: Connection,
    check_types: bool,
    keyed: bool,
    stop: threading.Event | None,
    node_id: int,
    mode: str,
    prefix: str,
    log_level: int | None,
    ledger: _Credits | None,
    credit_in: list[list[int | None]],
    upstream: str,
    where: _Where | None = None,
    where_slot: int = 0,
) -> None:
    """Entry point of one worker process (or thread): run one node's processor to the end."""
    parent = os.getppid()
    control = _Control(control_conn)
    if stop is None:  # a process: Ctrl-C is the caller's to handle, it tears the run down
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _settle_in_process()
        _watch_parent(prefix)
        if log_level is not None:
            _forward_logs(control, name, log_level)
    proc: Processor | FusedProcessor | None = None
    writer = _Writer(writes, ranks, prefix, ledger, (node_id, worker), stop)
    decoder = Decoder()
    try:
        control.send(("started",))
        op: Op = pickle.loads(op_arg) if isinstance(op_arg, bytes) else op_arg
        proc = op.open(
            name,
            check_types=check_types,
            processes=stop is None,
            shipped=op_arg if isinstance(op_arg, bytes) else None,
        )
        worker_ = _Worker(
            proc, worker, count, reads, writer, decoder, keyed, control, stop, node_id
        )
        worker_.count_done(ledger, credit_in)
        if isinstance(proc, FusedProcessor) and where is not None:
            proc.where = where.setter(where_slot)
        if mode == "free":
            worker_.run_free()
        elif mode == "dealt":
            worker_.run_dealt()
        elif mode == "reorder":
            worker_.run_reordered()
        else:
            worker_.run()
        for stats in worker_.finish_stats():
            control.send(("stats", *stats))
        closing, proc = proc, None
        if isinstance(closing, FusedProcessor):
            for stage, count in closing.skipped_by_stage():
                control.send(("skipped", count, stage))
        elif closing.skipped:
            control.send(("skipped", closing.skipped))
        try:
            closing.close()
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            stage = closing.stage_name if isinstance(closing, FusedProcessor) else name
            raise StageError(stage, "<none: in close()>", msg) from exc
    except _Undecodable as exc:
        item = f"<an item from {upstream} that could not be unpickled>"
        _report(control, name, _unreadable(name, item, exc))
        if proc is not None:
            with contextlib.suppress(BaseException):
                proc.close()
    except (_Stopped, EOFError, BrokenPipeError, ConnectionResetError):
        # Torn down, or a neighbour died: the caller reports what happened. Or the caller
        # itself died: its pipes close a moment before the kernel gives us a new parent.
        if stop is None:
            deadline = time.monotonic() + _WATCH_EVERY
            while os.getppid() == parent and time.monotonic() < deadline:
                time.sleep(0.01)
    except BaseException as exc:
        # A fused group's error is its stage's, as written.
        _report(control, proc.stage_name if isinstance(proc, FusedProcessor) else name, exc)
        if proc is not None:
            with contextlib.suppress(BaseException):
                proc.close()
    finally:
        if stop is None and log_level is not None:
            sys.modules["logging"].getLogger().handlers.clear()  # the pipe is closing
        control_conn.close()
        writer.encoder.close()
        decoder.close()
        if stop is None and os.getppid() != parent:
            # The caller died (we saw its pipes close): its cleanup will never run.
            with contextlib.suppress(OSError):
                cleanup(prefix)


def _settle_in_process() -> None:
    """Make a new worker process a clean host for its stage.

    - A forked child inherits the parent's ``concurrent.futures`` bookkeeping: forked from a
      pool's thread, its exit hook would join that thread, now the child's own, and fail
      ("cannot join current thread"), so the worker would exit with code 1 after its work.
      Those threads do not exist here: forget them.
    - multiprocessing forbids daemonic processes to have children; a stage that runs a
      pipeline of its own needs them. Our workers need no daemon flag inside: the caller
      stops them, and each one exits by itself when its parent dies (``_watch_parent``).
    """
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None:
        futures_thread._threads_queues.clear()
    me: Any = multiprocessing.current_process()
    me._config.pop("daemon", None)


def _watch_parent(prefix: str) -> None:
    """Exit when our parent is gone (the caller killed with SIGKILL, say).

    Our parent is the caller (fork, spawn) or the forkserver, which exits with the
    caller; either way the kernel then hands us to another parent. A thread checks
    for that twice a second, so no worker outlives its run by more than a moment,
    and the first to notice removes the run's shared memory, which the caller can
    no longer do.
    """
    parent = os.getppid()
    # The caller, by the pid the run's prefix names ("olympipe-<pid>-<run>-"): a worker forked
    # a moment before the caller died already has its new parent, which getppid() cannot tell.
    caller = int(prefix.split("-")[1])

    def watch() -> None:
        while True:
            time.sleep(_WATCH_EVERY)
            if os.getppid() != parent or not _alive(caller):
                with contextlib.suppress(OSError):
                    cleanup(prefix)
                os._exit(1)

    threading.Thread(target=watch, name="olympipe-watchdog", daemon=True).start()


def _report(control: _Control, name: str, exc: BaseException) -> None:
    """Send a failure to the caller: the error, its original cause and the traceback text."""
    ours = isinstance(exc, PipelineError)  # StageError, StageTypeError: re-raised as they are
    cause = exc.__cause__ if ours else exc
    import traceback

    tb = "".join(traceback.format_exception(cause)) if cause is not None else ""
    err = exc if ours else None
    # The text always arrives; the exceptions themselves travel apart, as a blob the caller
    # may fail to unpickle (a class it cannot import, an __init__ with two arguments and args
    # holding one, as botocore's ClientError): the text then still names stage and item.
    item = err.item_repr if isinstance(err, StageError) else "<unknown>"
    shown = cause if cause is not None else exc
    what = err.message if isinstance(err, StageError) else f"{type(shown).__name__}: {shown}"
    blob: bytes | None = None
    for pair in ((err, cause), (err, None)):
        try:
            blob = pickle.dumps(pair)
            pickle.loads(blob)  # and back, here at least
            break
        except Exception:
            blob = None
    payload = pickle.dumps(("error", name, item, what, tb, blob))
    with contextlib.suppress(OSError), control.lock:
        control.conn.send_bytes(payload)


class _Worker:
    """Reads messages in ``seq`` order from its parents, processes them, writes the results."""

    def __init__(
        self,
        proc: Processor | FusedProcessor,
        worker: int,
        count: int,
        reads: list[list[Connection]],
        writer: _Writer,
        decoder: Decoder,
        keyed: bool,
        control: _Control,
        stop: threading.Event | None,
        node_id: int,
    ) -> None:
        self.proc = proc
        self.decoder = decoder
        self.node_id = node_id
        self.worker = worker
        self.busy, self.items, self.next_report = 0.0, 0, 0.0
        # Reports come quickly at first (what the first, tiny messages say about an item's
        # cost is rough), then every _REPORT_EVERY.
        self.report_every = _FIRST_REPORT
        self.cold = True  # the first message pays for cold caches and first calls: not counted
        # Big buffers arrive as views of shared memory (no copy) unless the stage keeps items.
        self.borrow = not proc.op.stateful
        self.ledger: _Credits | None = None  # where to tell producers what is done
        self.slots: dict[Connection, int] = {}  # the ledger's slot of each counted input pipe
        self.stats = WorkerStats(time.perf_counter(), worker)
        # CPU time is read around a sample of the messages (a message every _CPU_SAMPLE
        # seconds at most), and the busy time scaled by what the sample used.
        self.next_sample = 0.0
        self.sampled_busy = self.sampled_cpu = 0.0
        self.last_key: Key = (0,)
        self.control = control
        self.stop = stop
        self.seq = worker
        self.step = count
        self.reads = reads
        self.writer = writer
        self.keyed = keyed
        self.out: list[Any] = []
        self.out_keys: list[Key] = []
        self.ended = False  # sent END early (limit reached, timeout)
        self.enveloped = proc.op.enveloped  # a journaled run: the report counts inner items

    def count_done(self, ledger: _Credits | None, slots: list[list[int | None]]) -> None:
        """Count the messages done from the input pipes that have a slot in ``ledger``
        (``slots`` by parent and parent worker, as ``reads``)."""
        self.ledger = ledger
        self.slots = {
            conn: slot
            for conns, row in zip(self.reads, slots, strict=True)
            for conn, slot in zip(conns, row, strict=True)
            if slot is not None
        }

    def _done(self, conn: Connection, items: int) -> None:
        slot = self.slots.get(conn)
        if slot is not None and self.ledger is not None:
            self.ledger.done(slot, items)

    def run_free(self) -> None:
        """Arrival order: process each message from whichever parent worker sent it first."""
        open_conns = [conn for conns in self.reads for conn in conns]
        while open_conns:
            for conn in self._wait(open_conns):
                msg = _recv(conn, self.decoder, borrow=self.borrow)
                if msg is None:
                    open_conns.remove(conn)
                    continue
                self._process([msg])
                self._send(final=True)
                self._done(conn, len(msg[2]))
                self.seq += self.step
        self._end([])

    def run_dealt(self) -> None:
        """Arrival order, numbers kept: each message comes to this worker when it is free, and
        its outputs leave under its number; the next in-order reader restores the order."""
        open_conns = [conn for conns in self.reads for conn in conns]
        tails: list[Message] = []
        while open_conns:
            for conn in self._wait(open_conns):
                msg = _recv(conn, self.decoder, borrow=self.borrow)
                if msg is None:
                    open_conns.remove(conn)
                elif msg[0] == TAIL:
                    tails.append(msg)
                else:
                    self.seq = msg[0]
                    self._process([msg])
                    self._send(final=msg[1])
                    self._done(conn, len(msg[2]))
        self._end(tails)

    def run_reordered(self) -> None:
        """One parent whose workers send out of order: hold what comes early, process in
        number order, and say how far it has come (the reorder window's other end)."""
        conns = list(self.reads[0])
        held: dict[int, tuple[Message, Connection]] = {}
        tails: list[Message] = []
        ledger = self.ledger
        while conns:
            for conn in self._wait(conns):
                msg = _recv(conn, self.decoder, borrow=self.borrow)
                if msg is None:
                    conns.remove(conn)
                elif msg[0] == TAIL:
                    tails.append(msg)
                else:
                    held[msg[0]] = (msg, conn)
            if self.seq in held:
                while self.seq in held:
                    msg, conn = held.pop(self.seq)
                    self._process([msg])
                    self._send(final=True)
                    self._done(conn, len(msg[2]))
                    self.seq += 1
                if ledger is not None:
                    ledger.release(self.node_id, self.seq)
        for seq in sorted(held):  # none: every number comes once (a guard, not a path)
            self.seq = seq
            self._process([held[seq][0]])
            self._send(final=True)
        self._end(tails)

    def _end(self, tails: list[Message]) -> None:
        """End of stream: the parents' last words (their flushes), then ours, then END."""
        if self.ended:
            return
        self._process(tails)
        self.proc.flush(self._emit_flush)
        keys = self.out_keys if self.keyed else None
        try:
            self.writer.tail(self.out, keys)
        except _Unencodable as exc:
            raise self._unpicklable_output() from exc.__cause__
        self.stats.items_out += count_items(self.out, self.enveloped)
        self.out, self.out_keys = [], []
        self.writer.end()

    def run(self) -> None:
        """Process message after message, in seq order, then the end of the stream."""
        reads, stop = self.reads, self.stop
        merging = len(reads) > 1
        timed = self.proc.op.seconds is not None
        if not merging and not timed and stop is None:
            self._run_one()
            return
        active = set(range(len(reads)))  # parents still sending numbered messages
        draining: dict[Connection, int] = {}  # pipes of finished parents, read up to END
        tails: list[Message] = []
        while active:
            # The one pipe of each parent that carries message number self.seq.
            pending = {reads[p][self.seq % len(reads[p])]: p for p in active}
            msgs: list[Message] = []
            taken: list[tuple[Connection, int]] = []  # (pipe, items) of the messages read
            while pending:
                # Several pipes, a deadline or a stop to watch: read whichever pipe is ready,
                # so that no writer blocks on us (one plain pipe is _run_one's).
                ready = self._wait([*pending, *draining])
                for conn in ready:
                    msg = _recv(conn, self.decoder, borrow=self.borrow)
                    if conn in draining:
                        if msg is None:
                            del draining[conn]
                        else:
                            tails.append(msg)
                        continue
                    parent = pending[conn]
                    if msg is None or msg[0] == TAIL:
                        # No message self.seq from this parent: it is at its end, and so are
                        # its other workers, whose pipes to us hold at most a TAIL and END.
                        del pending[conn]
                        active.discard(parent)
                        for other in reads[parent]:
                            if other is not conn or msg is not None:
                                draining[other] = parent
                        if msg is not None:
                            tails.append(msg)
                    else:
                        taken.append((conn, len(msg[2])))
                        if msg[1]:
                            del pending[conn]
                            msgs.append(msg)
                        elif merging:  # a partial, held until the whole seq is in
                            msgs.append(msg)
                        else:  # a partial from upstream: pass it on at once
                            self._process([msg])
                            self._send(final=False)
            if msgs:
                self._process(msgs)
                self._send(final=True)
            for conn, n in taken:
                self._done(conn, n)
            if active:
                self.seq += self.step
        self._drain(list(draining), tails)
        self._end(tails)

    def _run_one(self) -> None:
        """``run`` for a worker process with one parent and nothing time-based, the common
        case: blocking reads from the one pipe that carries each message, in turn."""
        conns = self.reads[0]
        decoder, borrow = self.decoder, self.borrow
        read_no = itertools.count()
        while True:
            conn = conns[self.seq % len(conns)]
            if not next(read_no) % _READ_SAMPLE:
                self._count_read([conn])  # a sample of the reads, for the queue's fill
            msg = _recv(conn, decoder, borrow=borrow)
            if msg is None or msg[0] == TAIL:
                break
            self._process([msg])
            self._send(final=msg[1])
            self._done(conn, len(msg[2]))
            if msg[1]:
                self.seq += self.step
        # The parent is at its end: its other workers' pipes hold at most a TAIL and END.
        tails = [] if msg is None else [msg]
        self._drain([other for other in conns if other is not conn or msg is not None], tails)
        self._end(tails)

    def _drain(self, conns: list[Connection], tails: list[Message]) -> None:
        """Read the pipes of finished parents up to their END, keeping the TAILs before it."""
        while conns:
            for conn in self._wait(conns):
                msg = _recv(conn, self.decoder, borrow=self.borrow)
                if msg is None:
                    conns.remove(conn)
                else:
                    tails.append(msg)

    def _wait(self, conns: list[Connection]) -> list[Connection]:
        """Wait for readable pipes; meanwhile run time-based behaviour and watch for stop."""
        at_once = self._count_read(conns)
        if at_once:
            return at_once
        while True:
            timeout = _STOP_POLL if self.stop is not None else None
            deadline = None if self.ended else self.proc.deadline()
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            ready: list[Any] = wait(conns, timeout)
            if ready:
                return ready
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            if deadline is not None and time.monotonic() >= deadline:
                self.proc.poll(time.monotonic(), self._emit_timed)
                if self.proc.exhausted:
                    self._finish_early()
                elif self.out:
                    self._send(final=False)

    def _count_read(self, conns: list[Connection]) -> list[Connection]:
        """The pipes with a message already waiting; counted for the report's queue fill."""
        ready: list[Connection] = select.select(conns, [], [], 0)[0]
        self.stats.reads += 1
        if ready:
            self.stats.ready_reads += 1
        return ready

    def finish_stats(self) -> list[tuple[WorkerStats] | tuple[WorkerStats, str]]:
        """The stats to send at the end: the CPU time estimated from the sampled messages; a
        fused group's apart for each of its stages (reads for the first, blocked time for the
        last: the group's queue and its output are theirs)."""
        stats = self.stats
        stats.ended = time.perf_counter()
        share = min(1.0, self.sampled_cpu / self.sampled_busy) if self.sampled_busy > 0 else 0.0
        if share:
            stats.cpu = stats.busy * share
        proc = self.proc
        if not isinstance(proc, FusedProcessor):
            return [(stats,)]
        out: list[tuple[WorkerStats] | tuple[WorkerStats, str]] = []
        last = len(proc.names) - 1
        for i, stage in enumerate(proc.names):
            one = WorkerStats(stats.started, self.worker)
            one.ended = stats.ended
            one.busy = proc.busy[i]
            one.cpu = proc.cpu[i]
            one.items_in, one.items_out = proc.items_in[i], proc.items_out[i]
            one.timeline = proc.timelines[i]
            if i == 0:
                one.reads, one.ready_reads = stats.reads, stats.ready_reads
            if i == last:
                one.blocked = stats.blocked
            out.append((one, stage))
        return out

    def _process(self, msgs: list[Message]) -> None:
        started = time.perf_counter()
        sample = started >= self.next_sample
        cpu = time.thread_time() if sample else 0.0
        self._process_timed(msgs)
        now = time.perf_counter()
        stats = self.stats
        if sample:
            self.sampled_cpu += time.thread_time() - cpu
            self.sampled_busy += now - started
            self.next_sample = now + _CPU_SAMPLE
        # Items, not a journaled run's envelopes: the feeder sizes messages by what one costs.
        n = sum(count_items(m[2], self.enveloped) for m in msgs)
        stats.items_in += n
        if self.proc.failures:
            self._send_failures()
        stats.busy += now - started
        stats.timeline.add(started, now)
        # What an item costs: the mean over the last moments (a few slow items among fast
        # ones count), without the first message.
        if self.cold:
            self.cold = False
        else:
            self.busy += now - started
            self.items += max(n, 1)
        if now > self.next_report and self.items:
            # Tell the caller what an item costs here (the feeders size messages by it),
            # and how far we are (progress).
            out = stats.items_out + len(self.out)
            cost = self.busy / self.items
            proc = self.proc
            if isinstance(proc, FusedProcessor):  # progress for each stage of the group
                each = list(zip(proc.names, proc.items_in, proc.items_out, strict=True))
                self.control.send(("cost", cost, self.worker, stats.items_in, out, each))
            else:
                self.control.send(("cost", cost, self.worker, stats.items_in, out))
            self.busy, self.items, self.next_report = 0.0, 0, now + self.report_every
            self.report_every = min(2 * self.report_every, _REPORT_EVERY)

    def _process_timed(self, msgs: list[Message]) -> None:
        proc = self.proc
        if self.ended:
            return
        if not self.keyed:
            for _, _, items, _ in msgs:
                proc.process_many(items, self.out)
                if proc.exhausted:
                    self._finish_early()
                    return
            return
        pairs = [
            (k, x) for _, _, items, keys in msgs for k, x in zip(keys or (), items, strict=True)
        ]
        if len(msgs) > 1:  # a fan-in: restore the inline order
            pairs.sort(key=lambda kx: kx[0])
        for key, item in pairs:
            self.last_key = key
            start = len(self.out)
            proc.process(item, self.out.append)
            n = len(self.out) - start
            if n == 1 and proc.op.kind in ("map", "filter", "limit", "timeout", "merge"):
                self.out_keys.append(key)
            else:
                self.out_keys += [(*key, j) for j in range(n)]
            if proc.exhausted:
                self._finish_early()
                return

    def _send_failures(self) -> None:
        """Hand the items that failed under on_error="collect" to the caller."""
        proc = self.proc
        if isinstance(proc, FusedProcessor):
            for i, failures in proc.take_failures():
                self._send_stage_failures(failures, proc.items_in[i], proc.names[i])
            return
        failures, proc.failures = proc.failures, []
        self._send_stage_failures(failures, self.stats.items_in, None)

    def _send_stage_failures(
        self, failures: list[Failure[Any]], entered: int, stage: str | None
    ) -> None:
        report = ("failures", self.worker, failures, entered, stage)
        try:
            self.control.send(report)
        except (pickle.PicklingError, TypeError, AttributeError):
            # An item the stage changed into something unpicklable: its repr stands in.
            shown = [
                Failure(
                    f.stage, short_repr(f.item), f.error_type, f.message, f.traceback, f.attempts
                )
                for f in failures
            ]
            self.control.send(("failures", self.worker, shown, entered, stage))

    def _emit_flush(self, value: object) -> None:
        """End of stream: a flush's outputs come after everything, in node order (as inline)."""
        self.out.append(value)
        if self.keyed:
            self.out_keys.append((INF, self.node_id))

    def _emit_timed(self, value: object) -> None:
        """A time-based flush comes after the last item seen and before the next one."""
        self.out.append(value)
        if self.keyed:
            self.out_keys.append((*self.last_key, INF))

    def _send(self, *, final: bool) -> None:
        if self.ended and not self.out:
            return
        keys = self.out_keys if self.keyed else None
        started = time.perf_counter()
        try:  # no context manager: this is once a message
            self.writer.send(self.seq, final, self.out, keys)
        except _Unencodable as exc:
            raise self._unpicklable_output() from exc.__cause__
        self.stats.blocked += time.perf_counter() - started
        self.stats.items_out += count_items(self.out, self.enveloped)
        self.out, self.out_keys = [], []
        self.decoder.settle()  # inputs now copied on or dropped: their segments are free

    def _unpicklable_output(self) -> StageError:
        """The StageError for an output pickle refused: this stage and that item."""
        return _unpicklable(self.proc.name, self.out, "on to the next stage")

    def _finish_early(self) -> None:
        """A limit or timeout was reached: end the stream downstream now, then drain."""
        if self.ended:
            return
        # Tell the caller first (before END reaches it), so that it stops reading the
        # source once nothing else wants it, and does not wait for us to drain.
        self.control.send(("exhausted", self.proc.name))
        self._send(final=True)
        self.writer.end()
        self.ended = True


# --- the caller's side ---


class _Waiter:
    """``multiprocessing.connection.wait`` for a loop that waits on nearly the same pipes each
    time: they stay registered in one ``select.poll`` from call to call (about 1 µs a call,
    against 10 µs for a selector built anew over eight pipes)."""

    def __init__(self) -> None:
        self.poller = select.poll()
        self.fds: dict[int, Any] = {}  # registered descriptor -> its object

    def wait(self, objs: list[Any], timeout: float) -> list[Any]:
        """The objects of ``objs`` (connections, process sentinels) that are ready to read,
        closed or broken; empty after ``timeout`` seconds."""
        fds = {obj if isinstance(obj, int) else obj.fileno(): obj for obj in objs}
        old = self.fds
        if fds.keys() != old.keys():
            for fd in old.keys() - fds.keys():
                self.poller.unregister(fd)
            for fd in fds.keys() - old.keys():
                self.poller.register(fd, select.POLLIN)
        self.fds = fds
        return [fds[fd] for fd, _ in self.poller.poll(timeout * 1000.0)]


class _Run:
    """One run: starts workers and feeders, yields outputs, tears everything down."""

    def __init__(
        self,
        graph: Graph,
        *,
        threads: bool,
        check_types: bool,
        start_method: str | None,
        recorder: Recorder | None = None,
        plan: PlanMode = "auto",
    ) -> None:
        self.began = time.perf_counter()
        # The graph as the user wrote it becomes the physical one: fused chains are one node.
        graph, self.groups, self.report_plan = physical(
            graph, plan, budget=cores(), threads=threads
        )
        if recorder is not None:
            recorder.plan = self.report_plan
        self.graph = graph
        self.recorder = recorder
        self.threads = threads
        ctx: Any = multiprocessing.get_context(start_method)
        self.plan = _Plan(graph, ctx, self.groups)
        self.ctx: Any = ctx
        self.check_types = check_types
        self.procs: list[tuple[str, Any]] = []  # (stage name, Process or Thread)
        self.controls: list[tuple[str, Any]] = []
        self.feeders: list[_Feeder] = []
        self.stop = threading.Event()  # the whole run is being torn down
        # Shared-memory segments of this run are named after it: cleanup() finds them all.
        self.prefix = f"olympipe-{os.getpid()}-{next(_RUNS)}-"
        self.ledger = _Credits.create(f"{SHM_DIR}/{self.prefix}ledger", self.plan)
        # Fused groups' workers say which stage they are in, for a death's report.
        self.where_slots: dict[tuple[int, int], int] = {}
        for node in graph.nodes:
            if isinstance(node.op, FusedOp):
                for w in range(self.plan.workers[node.id]):
                    self.where_slots[(node.id, w)] = len(self.where_slots)
        self.where: _Where | None = None
        if self.where_slots:
            self.where = _Where.create(f"{SHM_DIR}/{self.prefix}where", len(self.where_slots))
        self.worker_of: dict[int, tuple[int, int]] = {}  # id(process) -> (node, worker)
        self.next_plan = 0.0  # when the planner looks at the groups' costs again
        self.skipped: dict[str, int] = {}  # items on_error="skip" dropped, by stage
        self.decoder = Decoder()
        self.source_stop = {n.id: threading.Event() for n in graph.sources}
        self.exhausted: set[str] = set()
        # Messages that have come out of each output: the feeders' measure of what is in flight.
        self.through = [0] * len(graph.outputs)
        self.started: set[str] = set()  # stages whose workers reached their main loop
        # Seconds per item, as each worker of each stage last reported (stage -> worker -> cost).
        self.costs: dict[str, dict[int, float]] = {}

    def start(self) -> None:
        graph, plan = self.graph, self.plan
        for node in graph.nodes:
            if node.op is None:
                continue
            # Threads and forked children share the parent's memory: no need to unpickle.
            shared = self.threads or self.ctx.get_start_method() == "fork"
            shipped = _ship(node.op, node, imported=not shared)
            op_arg = node.op if shared else shipped
            ranks = self._ranks(node)
            for w in range(plan.workers[node.id]):
                reads = [plan.reads[(node.id, w)][p] for p in node.parents]
                writes = plan.writes.get((node.id, w), {})
                ctl_r, ctl_s = self.ctx.Pipe(duplex=False)
                stop = self.stop if self.threads else None
                args = (
                    op_arg,
                    node.name,
                    w,
                    plan.workers[node.id],
                    reads,
                    writes,
                    ranks,
                    ctl_s,
                    self.check_types,
                    plan.keyed,
                    stop,
                    node.id,
                    plan.mode(node),
                    self.prefix,
                    _caller_log_level(),
                    self.ledger,
                    [
                        [
                            plan.credit_slots.get((p, pw, node.id, w))
                            for pw in range(plan.workers[p])
                        ]
                        for p in node.parents
                    ],
                    ", ".join(repr(_last_stage(graph.nodes[p])) for p in node.parents)
                    or "the source",
                    self.where,
                    self.where_slots.get((node.id, w), 0),
                )
                if self.threads:
                    worker: Any = threading.Thread(
                        target=_worker_main,
                        args=args,
                        name=f"olympipe:{node.name}:{w}",
                        daemon=True,
                    )
                else:
                    worker = self.ctx.Process(
                        target=_worker_main,
                        args=args,
                        name=f"olympipe:{node.name}:{w}",
                        daemon=True,
                    )
                worker.start()
                if not self.threads:
                    ctl_s.close()
                self.procs.append((node.name, worker))
                self.worker_of[id(worker)] = (node.id, w)
                self.controls.append((node.name, ctl_r))
        if not self.threads:
            for conn in plan.child_side:
                if not _is_feeder_end(conn, plan):
                    conn.close()
        for rank, node in enumerate(graph.sources):
            writes = plan.writes.get((node.id, 0), {})
            feeder = _Feeder(
                node,
                rank,
                _Writer(
                    writes,
                    self._ranks(node),
                    self.prefix,
                    self.ledger,
                    (node.id, 0),
                    self.source_stop[node.id],
                ),
                keyed=plan.keyed,
                fixed=len(graph.sources) > 1,
                stop=self.source_stop[node.id],
                costs=self.costs,
                stages=sum(1 for n in graph.nodes if n.op is not None),
                through=self.through,
                ramp=_RAMP * sum(plan.workers[n.id] for n in graph.nodes if n.op is not None),
            )
            feeder.receivers = [_first_stage(graph.nodes[c]) for c in node.children]
            self.feeders.append(feeder)
            feeder.start()

    def _ranks(self, node: Node) -> dict[int, int] | None:
        if not self.plan.keyed or len(node.children) < 2:
            return None
        return {child: rank for rank, child in enumerate(node.children)}

    def results(self) -> Iterator[tuple[int, list[Any]]]:
        """Yield (output index, items) in each output's order, from whichever output is ready."""
        outputs = self.plan.outputs
        expected = [0] * len(outputs)
        live = set(range(len(outputs)))
        controls = {conn: name for name, conn in self.controls}
        sentinels = {} if self.threads else {p.sentinel: (name, p) for name, p in self.procs}
        waiter = _Waiter()
        # Pipes read up to END in arrival order: outputs at their end, and free outputs.
        draining: dict[Any, int] = {
            conn: i
            for i, node_id in enumerate(self.graph.outputs)
            if self.plan.free[node_id]
            for conn in outputs[i]
        }
        # Outputs whose workers send out of order: every pipe read, early messages held.
        reordering: dict[Any, int] = {
            conn: i
            for i, node_id in enumerate(self.graph.outputs)
            if -1 - i in self.plan.reorderers
            for conn in outputs[i]
        }
        held: dict[int, dict[int, list[Any]]] = {i: {} for i in set(reordering.values())}
        tails: dict[int, list[list[Any]]] = {i: [] for i in held}
        while live:
            at_end = set(draining.values())
            waiting = {
                outputs[i][expected[i] % len(outputs[i])]: i
                for i in live
                if i not in at_end and i not in held
            }
            waiting.update(draining)
            waiting.update(reordering)
            ready = waiter.wait([*waiting, *controls, *sentinels], _POLL)
            self._check_feeders()
            self._replan()
            for obj in ready:
                if obj in controls:
                    if not self._read_control(obj, controls[obj]):
                        del controls[obj]
                elif obj in sentinels:
                    self._check_death(*sentinels.pop(obj))
            for obj in ready:
                index = waiting.get(obj)
                if index is None:
                    continue
                try:
                    msg = _recv(obj, self.decoder)
                except _Undecodable as exc:
                    name = _last_stage(self.graph.nodes[self.graph.outputs[index]])
                    item = "<an output that could not be unpickled in the caller>"
                    raise _unreadable(name, item, exc) from exc.__cause__
                except (EOFError, OSError):
                    self._lost(index)
                    raise
                if obj in reordering:
                    yield from self._reorder(obj, index, msg, reordering, held, tails, expected)
                    if index not in reordering.values():
                        live.discard(index)
                    continue
                if obj in draining:
                    if msg is None:
                        del draining[obj]
                        if index not in draining.values():
                            live.discard(index)
                    else:
                        self.through[index] += 1
                        if msg[2]:
                            yield index, msg[2]
                    continue
                if msg is None or msg[0] == TAIL:
                    # The output is at its end: its workers' pipes hold a TAIL and END.
                    for conn in outputs[index]:
                        if conn is not obj or msg is not None:
                            draining[conn] = index
                    if index not in draining.values():
                        live.discard(index)
                    if msg is not None and msg[2]:
                        yield index, msg[2]
                    continue
                seq, final, items, _ = msg
                if final:
                    expected[index] = seq + 1
                    self.through[index] += 1
                if items:
                    yield index, items
        self._check_feeders()

    def _reorder(
        self,
        conn: Any,
        index: int,
        msg: Message | None,
        reordering: dict[Any, int],
        held: dict[int, dict[int, list[Any]]],
        tails: dict[int, list[list[Any]]],
        expected: list[int],
    ) -> Iterator[tuple[int, list[Any]]]:
        """One message of an output whose workers send out of order: the outputs now in
        order, and the reorder window moved on; at the output's end, what its flush left."""
        mine = held[index]
        if msg is None:
            del reordering[conn]
            if index not in reordering.values():  # the last pipe ended
                for seq in sorted(mine):  # none: every number comes once (a guard)
                    yield index, mine.pop(seq)
                for items in tails[index]:
                    yield index, items
            return
        seq, _, items, _ = msg
        if seq == TAIL:
            if items:
                tails[index].append(items)
            return
        mine[seq] = items
        moved = False
        while expected[index] in mine:
            items = mine.pop(expected[index])
            expected[index] += 1
            self.through[index] += 1
            moved = True
            if items:
                yield index, items
        if moved and self.ledger is not None:
            self.ledger.release(-1 - index, expected[index])

    def _replan(self) -> None:
        """Share the cores among the auto groups by what their items cost now (at most twice
        a second): a group that got slower gets more of its workers at work."""
        now = time.perf_counter()
        if now < self.next_plan or self.ledger is None:
            return
        self.next_plan = now + _REPLAN_EVERY
        auto = [
            (node, group)
            for node, group in zip(self.graph.nodes, self.groups, strict=True)
            if group is not None and group.auto and node.id in self.plan.dealt
        ]
        if len(auto) < 2:
            return
        loads: list[float] = []
        for node, _ in auto:
            reported = list(self.costs.get(node.name, {}).values())
            if not reported:
                return  # not every group has said what an item costs yet
            loads.append(sum(reported) / len(reported))
        total = sum(loads) or 1.0
        budget = cores()
        for (node, group), load in zip(auto, loads, strict=True):
            share = max(1, min(group.workers, round(budget * load / total)))
            if share != group.history[-1][1]:
                group.history.append((now - self.began, share))
                self.ledger.set_active(node.id, share)

    def _lost(self, index: int) -> None:
        """An output pipe closed without END: its worker died. Raise what happened to it,
        once its report or its exit (a moment behind the pipe's end) has arrived."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            self._read_controls()
            for name, p in self.procs:
                if not self.threads and not p.is_alive():
                    self._check_death(name, p)
            time.sleep(0.01)
        name = _last_stage(self.graph.nodes[self.graph.outputs[index]])
        raise WorkerDied(name, None, None, "it closed its output without ending the stream")

    def _check_feeders(self) -> None:
        for feeder in self.feeders:
            if feeder.error is not None:
                raise feeder.error

    def _read_control(self, conn: Connection, name: str) -> bool:
        """Handle one report from a worker; False once the worker has closed its end."""
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return False  # the worker finished and closed its end
        try:
            report = pickle.loads(data)
        except Exception as exc:  # _report checks its errors round-trip; this is a last guard
            what = f"a report of this stage's worker could not be unpickled: {exc!r}"
            raise StageError(name, "<unknown>", what) from exc
        kind = report[0]
        if kind == "cost":
            cost, worker, items_in, items_out = report[1:5]
            self.costs.setdefault(name, {})[worker] = cost
            if self.recorder is not None:
                each = report[5] if len(report) > 5 else [(name, items_in, items_out)]
                for stage, stage_in, stage_out in each:
                    self.recorder.live(stage, worker, stage_in, stage_out)
            return True
        if kind == "log":
            import logging

            record = logging.makeLogRecord(report[1])
            logging.getLogger(record.name).handle(record)
            return True
        if kind == "stats":  # a fused group's come once per stage, with the stage's name
            if self.recorder is not None:
                self.recorder.stats(report[2] if len(report) > 2 else name, report[1])
            return True
        if kind == "failures":
            if self.recorder is not None:
                _, worker, failures, entered, stage = report
                self.recorder.fail(stage or name, worker, failures, entered)
            return True
        if kind == "skipped":  # said once per stage at the end, for all its workers
            stage = report[2] if len(report) > 2 else name
            self.skipped[stage] = self.skipped.get(stage, 0) + report[1]
            if self.recorder is not None:
                self.recorder.skip(stage, report[1])
            return True
        if kind == "started":
            self.started.add(name)
            return True
        if kind == "exhausted":
            self.exhausted.add(report[1])
            self._stop_dead_sources()
            return True
        _, stage, item, what, tb, blob = report
        err: BaseException | None = None
        cause: BaseException | None = None
        if blob is not None:
            try:
                err, cause = pickle.loads(blob)
            except Exception as exc:  # the text says what happened
                what = f"{what} (its exception cannot be rebuilt here: {exc!r})"
        if isinstance(err, StageError):
            err = StageError(err.stage, err.item_repr, err.message, tb)
        if err is None:
            err = StageError(stage, item, what, tb)
        raise err from cause

    def _check_death(self, name: str, process: Any) -> None:
        process.join(timeout=1.0)
        code = process.exitcode
        if code not in (0, None):
            # A failure report may still be in flight: let it win, it says more.
            for ctl_name, conn in self.controls:
                if ctl_name == name and not conn.closed and conn.poll(0.2):
                    self._read_control(conn, name)
            hint = ""
            if name not in self.started and self.ctx.get_start_method() != "fork":
                hint = (
                    "it died while starting; a script that runs pipelines when imported must "
                    "do so under `if __name__ == '__main__':` (see its stderr)"
                )
            raise WorkerDied(self._stage_of(process, name), process.pid, code, hint)

    def _stage_of(self, process: Any, name: str) -> str:
        """The stage (as written) a worker was running: in a fused group, the one it was in."""
        node_id, worker = self.worker_of.get(id(process), (-1, 0))
        slot = self.where_slots.get((node_id, worker))
        if slot is None or self.where is None:
            return name
        op = self.graph.nodes[node_id].op
        assert isinstance(op, FusedOp)
        return op.stages[min(max(0, self.where[slot]), len(op.stages) - 1)][0]

    def _stop_dead_sources(self) -> None:
        """Stop reading each source that no output wants any more (limit reached, timeout)."""
        nodes = self.graph.nodes
        sinks = set(self.graph.outputs)

        def alive(node_id: int) -> bool:
            if nodes[node_id].name in self.exhausted:
                return False
            return node_id in sinks or any(alive(c) for c in nodes[node_id].children)

        for node in self.graph.sources:
            if not alive(node.id):
                self.source_stop[node.id].set()

    def finish(self) -> None:
        """After the last output: let workers run their class stages' close() and exit."""
        self._read_controls()
        # After a limit or timeout, upstream workers may wait on a stalled source: stop them.
        deadline = time.monotonic() + (0.0 if self.exhausted else _GRACE)
        for _, p in self.procs:
            # Keep reading reports meanwhile: a close() that logs must not fill its pipe.
            while p.is_alive() and time.monotonic() < deadline:
                p.join(timeout=min(_POLL, max(0.0, deadline - time.monotonic())))
                self._read_controls()
        self._read_controls()  # a close() that raised is an error of the run, as inline
        for stage, count in self.skipped.items():
            log_skipped(stage, count)

    def _read_controls(self) -> None:
        """Handle every report the workers have sent so far."""
        for name, conn in self.controls:
            while not conn.closed and conn.poll(0) and self._read_control(conn, name):
                pass

    def kill_now(self) -> None:
        """The caller is about to die (SIGTERM): kill the workers, remove the shared memory.
        Called from a signal handler: no join, no lock, nothing that could wait on the
        interrupted code."""
        if not self.threads:
            pids: list[int] = []
            for _, p in self.procs:
                with contextlib.suppress(ValueError):  # closed already: it has been joined
                    if p.pid is not None:
                        pids.append(p.pid)
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 1.0  # SIGKILL is prompt; a dead worker writes nothing
            while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.005)
        with contextlib.suppress(OSError):
            cleanup(self.prefix)

    def close(self) -> None:
        """Stop everything: feeders, workers, pipes. Safe to call more than once."""
        if self.stop.is_set():
            return
        self.stop.set()
        for event in self.source_stop.values():
            event.set()
        if self.threads:  # a closed read end makes a blocked writer fail instead of hang
            for conns_by_parent in self.plan.reads.values():
                for conns in conns_by_parent.values():
                    for conn in conns:
                        conn.close()
        for _, p in self.procs:
            if not self.threads and p.is_alive():
                p.terminate()
        for conn_list in self.plan.outputs:
            for conn in conn_list:
                conn.close()
        deadline = time.monotonic() + 5.0  # for all: stuck threads are waited for together
        for _, p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if not self.threads and p.is_alive():
                p.kill()
                p.join(timeout=1.0)
            if not self.threads and not p.is_alive():
                p.close()  # its sentinel pipe, now rather than at garbage collection
        for _, conn in self.controls:
            conn.close()
        for conn in self.plan.child_side:
            conn.close()
        for feeder in self.feeders:
            feeder.join(timeout=1.0)
        self.decoder.close()
        for mapped in (self.ledger, self.where):
            if mapped is not None:
                mapped.close()
        # Segments that messages never read, or a killed worker, left behind.
        cleanup(self.prefix)


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (neither gone nor a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs: by /proc where there is one (a zombie counts as gone),
    else by whether a signal could reach it."""
    if os.path.isdir("/proc/self"):
        return _running(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def _ship(op: Op | FusedOp, node: Node, *, imported: bool) -> bytes:
    """``op`` pickled for its workers: by the standard pickle when it can (fast, no import),
    else by cloudpickle (lambdas, closures, ``__main__``). Checked under every start method,
    so a stage that would fail under spawn fails under fork too.

    ``imported``: the workers import the script anew (spawn, forkserver), which ``_ship.dumps``
    is for (issue 22). Under fork the bytes only prove that the stage pickles: a reference to
    ``__main__`` is as good there.
    """
    if not imported:
        with contextlib.suppress(Exception):
            return pickle.dumps(op, protocol=5)
    from .._ship import dumps

    # A fused group's stages one by one first: the one that cannot travel is named.
    parts = op.stages if isinstance(op, FusedOp) else [(node.name, op)]
    shipped = b""
    for name, part in parts:
        try:
            shipped = dumps(part)
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"
            msg = f"cannot pickle stage {name!r} to send it to its workers: {what}"
            raise StageError(name, "<none: shipping the stage>", msg) from exc
    return dumps(op) if isinstance(op, FusedOp) else shipped


def _first_stage(node: Node) -> str:
    """The name of the stage (as written) that reads a physical node's inputs."""
    return node.op.stages[0][0] if isinstance(node.op, FusedOp) else node.name


def _last_stage(node: Node) -> str:
    """The name of the stage (as written) whose outputs leave a physical node."""
    return node.op.stages[-1][0] if isinstance(node.op, FusedOp) else node.name


class _Feeder:
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
        writer: _Writer,
        *,
        keyed: bool,
        fixed: bool,
        stop: threading.Event,
        costs: dict[str, dict[int, float]],
        stages: int,
        through: list[int] | None = None,
        ramp: int = 1,
    ) -> None:
        self.node, self.rank, self.writer = node, rank, writer
        self.costs, self.stages = costs, stages
        self.through = through or [0]
        self.ramp = ramp
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
        self.threads[0].join(timeout if self.container else min(timeout, _STOP_POLL))

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
        if slowest is None or len(self.costs) < self.stages:
            self._ramp_up()
            return 1
        by_work = int(_MESSAGE_WORK / max(slowest, 1e-9))
        by_bytes = int(_MESSAGE_BYTES / max(self.item_bytes, 1.0))
        weight = 1 if self.weight is None else max(1, self.weight())
        self.last = max(1, min(max(_MAX_BATCH, weight), by_work, by_bytes, 2 * self.last))
        return max(1, self.last // weight)

    def _ramp_up(self) -> None:
        """Until every stage has said what an item costs, keep few one-item messages in flight
        (waiting at most ``_STOP_POLL`` for one: an output may have ended early)."""
        deadline = time.monotonic() + _STOP_POLL
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
                if not pending:
                    every = min(2 * every, 8 * _FLUSH)  # a long pause: look less often
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
            if lock.acquire(timeout=_STOP_POLL):  # the reader may hold it, blocked in a send
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
        except _Unencodable as exc:  # before the OSErrors: an item's own may be one
            receivers = ", ".join(repr(n) for n in self.receivers)
            where = f"to stage {receivers}" if receivers else "to the caller"
            name = self.receivers[0] if self.receivers else self.node.name
            self.error = _unpicklable(name, items, where)
            self.error.__cause__ = exc.__cause__
            self._end()
        except (OSError, _Stopped):
            self._end()  # the run is being torn down: the caller knows why
        self.seq += 1
        return len(items)

    def _end(self) -> None:
        """Send END, once (under the lock)."""
        if self.ended:
            return
        self.ended = True
        with contextlib.suppress(OSError):
            self.writer.end()
        self.writer.encoder.close()


def _is_feeder_end(conn: Connection, plan: _Plan) -> bool:
    """Whether ``conn`` is a pipe end the caller's feeder threads write to."""
    for node in plan.graph.sources:
        for conns in plan.writes.get((node.id, 0), {}).values():
            if conn in conns:
                return True
    return False


def execute(
    graph: Graph,
    *,
    threads: bool = False,
    check_types: bool = False,
    start_method: str | None = None,
    recorder: Recorder | None = None,
    plan: PlanMode = "auto",
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``graph`` with one process (or thread) per worker of each group of its plan."""
    run = _Run(
        graph,
        threads=threads,
        check_types=check_types,
        start_method=start_method,
        recorder=recorder,
        plan=plan,
    )
    signals = _Signals(run)
    in_flight: BaseException | None = None
    try:
        signals.start()
        run.start()
        yield from run.results()
        run.finish()
    except BaseException as exc:
        in_flight = exc
        raise
    finally:
        # Nested, so that a signal landing before the handlers are swapped cannot skip close().
        try:
            signals.hold()
        finally:
            try:
                run.close()
            finally:
                signals.release(in_flight)


# --- the caller's signals during a run ---
#
# SIGTERM, what `kill`, `timeout`, Slurm and Kubernetes send to the whole process group, would
# end the caller at once and leave the runs' shared memory in /dev/shm until reboot (the workers
# die of it too, so none of them cleans up). While runs are on and SIGTERM has no handler of the
# user's, ours kills every run's workers, removes the runs' shared memory and then lets the
# caller die of SIGTERM as it would have: no Python code of the user's runs in between, wherever
# the signal lands (in a run, in the loop over a stream, in another thread's run). A Ctrl-C
# during a teardown is held, then raised once the teardown is done: raised at once, it would cut
# the cleanup short (and print a second traceback).

_ACTIVE: Final[dict[str, _Run]] = {}  # the runs in progress in this process, by prefix
_PREVIOUS: Final[list[Any]] = []  # the SIGTERM handler ours replaced, while ours is installed
_OWNER: Final[list[int]] = []  # the pid whose runs _ACTIVE lists (a forked child inherits it)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_sigterm(signum: int, frame: object) -> None:
    # A child forked a moment ago may run this before _after_fork_in_child: not its runs.
    if os.getpid() in _OWNER:
        for run in list(_ACTIVE.values()):
            run.kill_now()
    signal.signal(signal.SIGTERM, _PREVIOUS[0] if _PREVIOUS else signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # the default: die of it; a user's handler: call it


# A fork while ours is installed: the child must not keep it (it has no runs of its own), and
# a SIGTERM that reaches the child before it has reset it must not be lost (CPython clears the
# child's pending signals after fork: `terminate()` right after `start()` would go unheard).
# So SIGTERM is blocked across the fork, and unblocked in the child once the handler is reset.
_FORKING = threading.local()  # .blocked: this thread blocked SIGTERM for a fork


def _before_fork() -> None:
    _FORKING.blocked = signal.getsignal(signal.SIGTERM) is _on_sigterm
    if _FORKING.blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _after_fork_in_parent() -> None:
    if getattr(_FORKING, "blocked", False):
        _FORKING.blocked = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _after_fork_in_child() -> None:
    """A forked child (a worker, or the user's own process) is not running our runs."""
    _ACTIVE.clear()
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _PREVIOUS[0] if _PREVIOUS else signal.SIG_DFL)
    _after_fork_in_parent()  # unblock: a SIGTERM held meanwhile now takes its course


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


_RAISED_AT = [-INF]  # when _on_sigint last raised KeyboardInterrupt


def _on_sigint(signum: int, frame: object) -> None:
    """Python's Ctrl-C while runs are on, except that a second one within a second of the
    first is dropped: it would land in the cleanup the first one set off (two quick presses,
    a terminal that sends two) and print a second traceback, chained to the first."""
    now = time.monotonic()
    if now - _RAISED_AT[0] < _SECOND_PRESS:
        return
    _RAISED_AT[0] = now
    raise KeyboardInterrupt


class _Signals:
    """One run's share of the signal handling above."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.sigint: Any = None  # SIGINT's handler before ours, to put back
        self.interrupted = False

    def start(self) -> None:
        _OWNER[:] = [os.getpid()]
        _ACTIVE[self.run.prefix] = self.run
        if _in_main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            _PREVIOUS[:] = [signal.SIG_DFL]
            signal.signal(signal.SIGTERM, _on_sigterm)
        if _in_main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)

    def hold(self) -> None:
        """Hold Ctrl-C for the teardown (in the main thread, where Python handles it)."""
        if not _in_main_thread():  # a stream closed from another thread, say
            return
        handler = signal.getsignal(signal.SIGINT)
        if handler is None:  # installed from C: Python could not put it back
            return
        self.sigint = handler
        signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum: int, frame: object) -> None:
        if time.monotonic() - _RAISED_AT[0] < _SECOND_PRESS:
            return  # the second press of a double Ctrl-C: the first is on its way
        self.interrupted = True

    def release(self, in_flight: BaseException | None) -> None:
        """After the teardown: put the handlers back, then raise a held Ctrl-C."""
        _ACTIVE.pop(self.run.prefix, None)
        if self.sigint is not None:
            signal.signal(signal.SIGINT, self.sigint)
        if not _ACTIVE and _in_main_thread() and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, _PREVIOUS[0] if _PREVIOUS else signal.SIG_DFL)
        if not _ACTIVE and _in_main_thread() and signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.interrupted and not isinstance(in_flight, KeyboardInterrupt):
            raise KeyboardInterrupt
