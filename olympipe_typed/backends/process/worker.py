"""One worker: reads its node's messages, runs the node's processor on them, writes the
results on."""

from __future__ import annotations

import itertools
import pickle
import select
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ..._failures import Failure
from ..._hints import short_repr
from ..._malloc import keep_freed_memory
from ..._ops import ONE_TO_ONE, count_items, number_outputs
from ..._planner import FusedProcessor
from ..._report import WorkerStats
from .pipe import PipeEnd, wait

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from ..._errors import StageError
    from ..._ops import Processor
    from ..._transport import Decoder


from .wire import (
    INF,
    STOP_POLL,
    TAIL,
    Control,
    Credits,
    Key,
    Message,
    Stopped,
    Unencodable,
    Writer,
    recv,
    unpicklable,
)

_REPORT_EVERY: Final = 0.1  # seconds between a worker's reports of its cost per item (and progress)


_FIRST_REPORT: Final = 0.00125  # ... at first: the interval doubles from this one


_CPU_SAMPLE: Final = 0.01  # a worker reads its CPU time around a message this often, at most
_TUNE_AFTER: Final = 0.05  # busy seconds after which a worker process tunes its malloc


_READ_SAMPLE: Final = 4  # a worker counts one blocking read in this many for the queue's fill


class Worker:
    """Reads messages in ``seq`` order from its parents, processes them, writes the results."""

    def __init__(
        self,
        proc: Processor | FusedProcessor,
        worker: int,
        count: int,
        reads: list[list[PipeEnd]],
        writer: Writer,
        decoder: Decoder,
        keyed: bool,
        control: Control,
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
        self.ledger: Credits | None = None  # where to tell producers what is done
        self.slots: dict[PipeEnd, int] = {}  # the ledger's slot of each counted input pipe
        self.stats = WorkerStats(time.perf_counter(), worker)
        # CPU time is read around a sample of the messages (a message every _CPU_SAMPLE
        # seconds at most), and the busy time scaled by what the sample used.
        self.next_sample = 0.0
        self.sampled_busy = self.sampled_cpu = 0.0
        self.last_key: Key = (0,)
        self.control = control
        self.stop = stop
        # A worker process that has worked a while keeps the memory its items free (_malloc):
        # not from its start, where the 2 ms of importing ctypes would weigh on short runs.
        self.untuned = stop is None
        self.seq = worker
        self.step = count
        self.reads = reads
        self.writer = writer
        self.keyed = keyed
        self.out: list[Any] = []
        self.out_keys: list[Key] = []
        self.ended = False  # sent END early (limit reached, timeout)
        self.enveloped = proc.op.enveloped  # a journaled run: the report counts inner items

    def count_done(self, ledger: Credits | None, slots: list[list[int | None]]) -> None:
        """Count the messages done from the input pipes that have a slot in ``ledger``
        (``slots`` by parent and parent worker, as ``reads``)."""
        self.ledger = ledger
        self.slots = {
            conn: slot
            for conns, row in zip(self.reads, slots, strict=True)
            for conn, slot in zip(conns, row, strict=True)
            if slot is not None
        }

    def _done(self, conn: PipeEnd, items: int) -> None:
        slot = self.slots.get(conn)
        if slot is not None and self.ledger is not None:
            self.ledger.done(slot, items)

    def run_free(self) -> None:
        """Arrival order: process each message from whichever parent worker sent it first."""
        open_conns = [conn for conns in self.reads for conn in conns]
        while open_conns:
            for conn in self._wait(open_conns):
                msg = recv(conn, self.decoder, borrow=self.borrow)
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
                msg = recv(conn, self.decoder, borrow=self.borrow)
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
        held: dict[int, tuple[Message, PipeEnd]] = {}
        tails: list[Message] = []
        ledger = self.ledger
        while conns:
            for conn in self._wait(conns):
                msg = recv(conn, self.decoder, borrow=self.borrow)
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
        except Unencodable as exc:
            raise self._unpicklable_output() from exc.__cause__
        self.stats.items_out += count_items(self.out, self.enveloped)
        self.out, self.out_keys = [], []
        self.writer.end()

    def run(self) -> None:
        """Process message after message, in seq order, then the end of the stream."""
        reads, stop = self.reads, self.stop
        merging = len(reads) > 1
        timed = self.proc.op.seconds is not None
        start_ahead = getattr(self.proc, "start_ahead", None)
        if not merging and not timed and start_ahead is not None:
            self._run_ahead(start_ahead)
            return
        if not merging and not timed and stop is None:
            self._run_one()
            return
        active = set(range(len(reads)))  # parents still sending numbered messages
        draining: dict[PipeEnd, int] = {}  # pipes of finished parents, read up to END
        tails: list[Message] = []
        while active:
            # The one pipe of each parent that carries message number self.seq.
            pending = {reads[p][self.seq % len(reads[p])]: p for p in active}
            msgs: list[Message] = []
            taken: list[tuple[PipeEnd, int]] = []  # (pipe, items) of the messages read
            while pending:
                # Several pipes, a deadline or a stop to watch: read whichever pipe is ready,
                # so that no writer blocks on us (one plain pipe is _run_one's).
                ready = self._wait([*pending, *draining])
                for conn in ready:
                    msg = recv(conn, self.decoder, borrow=self.borrow)
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
            msg = recv(conn, decoder, borrow=borrow)
            if msg is None or msg[0] == TAIL:
                break
            self._pass_on(msg, conn)
        self._parent_ended(msg, conn)

    def _pass_on(self, msg: Message, conn: PipeEnd) -> None:
        """Process one message of the one parent, send its outputs, free its place."""
        self._process([msg])
        self._send(final=msg[1])
        self._done(conn, len(msg[2]))
        if msg[1]:
            self.seq += self.step

    def _parent_ended(self, msg: Message | None, conn: PipeEnd) -> None:
        """The one parent is at its end (``msg``, END or its TAIL, came on ``conn``): its other
        workers' pipes hold at most a TAIL and END."""
        conns = self.reads[0]
        tails = [] if msg is None else [msg]
        self._drain([other for other in conns if other is not conn or msg is not None], tails)
        self._end(tails)

    def _run_ahead(self, start: Callable[[list[Any]], None]) -> None:
        """``run`` for an I/O stage with one parent: the messages already waiting start behind
        the one in hand, so that ``concurrency`` items stay in flight across messages (one
        message at a time, the last items of each left the others idle); outputs still leave
        message by message, in order."""
        conns = self.reads[0]
        decoder, borrow = self.decoder, self.borrow
        ahead: deque[tuple[Message | None, PipeEnd]] = deque()
        started = 0  # items of the messages in ``ahead``
        bound = 2 * self.proc.op.concurrency  # items started ahead, at most
        look = self.seq  # the number of the message the next read brings
        ended = False
        read_no = itertools.count()
        while True:
            while not ended:
                conn = conns[look % len(conns)]
                if ahead and (started >= bound or not conn.poll(0)):
                    break  # enough started, or nothing waiting: finish the first
                if not next(read_no) % _READ_SAMPLE:
                    self._count_read([conn])
                if self.stop is not None:
                    self._wait([conn])  # threads: watch for the run's stop meanwhile
                msg = recv(conn, decoder, borrow=borrow)
                ahead.append((msg, conn))
                if msg is None or msg[0] == TAIL:
                    ended = True
                else:
                    start(msg[2])
                    started += len(msg[2])
                    if msg[1]:
                        look += self.step
            msg, conn = ahead.popleft()
            if msg is None or msg[0] == TAIL:
                break
            started -= len(msg[2])
            self._pass_on(msg, conn)
        self._parent_ended(msg, conn)

    def _drain(self, conns: list[PipeEnd], tails: list[Message]) -> None:
        """Read the pipes of finished parents up to their END, keeping the TAILs before it."""
        while conns:
            for conn in self._wait(conns):
                msg = recv(conn, self.decoder, borrow=self.borrow)
                if msg is None:
                    conns.remove(conn)
                else:
                    tails.append(msg)

    def _wait(self, conns: list[PipeEnd]) -> list[PipeEnd]:
        """Wait for readable pipes; meanwhile run time-based behaviour and watch for stop."""
        at_once = self._count_read(conns)
        if at_once:
            return at_once
        while True:
            timeout = STOP_POLL if self.stop is not None else None
            deadline = None if self.ended else self.proc.deadline()
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            ready: list[Any] = wait(conns, timeout)
            if ready:
                return ready
            if self.stop is not None and self.stop.is_set():
                raise Stopped
            if deadline is not None and time.monotonic() >= deadline:
                self.proc.poll(time.monotonic(), self._emit_timed)
                if self.proc.exhausted:
                    self._finish_early()
                elif self.out:
                    self._send(final=False)

    def _count_read(self, conns: list[PipeEnd]) -> list[PipeEnd]:
        """The pipes with a message already waiting; counted for the report's queue fill."""
        ready: list[PipeEnd] = select.select(conns, [], [], 0)[0]
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
            if self.untuned and self.stats.busy >= _TUNE_AFTER:
                self.untuned = False
                keep_freed_memory()
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
        each = getattr(proc, "each", None)
        if each is not None and pairs:  # an I/O stage: the items in flight together
            number_outputs(
                pairs, each([x for _, x in pairs]), proc.op.kind, self.out, self.out_keys
            )
            self.last_key = pairs[-1][0]
            return
        for key, item in pairs:
            self.last_key = key
            start = len(self.out)
            proc.process(item, self.out.append)
            n = len(self.out) - start
            if n == 1 and proc.op.kind in ONE_TO_ONE:
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
        except Unencodable as exc:
            raise self._unpicklable_output() from exc.__cause__
        self.stats.blocked += time.perf_counter() - started
        self.stats.items_out += count_items(self.out, self.enveloped)
        self.out, self.out_keys = [], []
        self.decoder.settle()  # inputs now copied on or dropped: their segments are free

    def _unpicklable_output(self) -> StageError:
        """The StageError for an output pickle refused: this stage and that item."""
        return unpicklable(self.proc.name, self.out, "on to the next stage")

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
