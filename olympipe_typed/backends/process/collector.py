"""The caller's side of a run: it starts the workers and feeders, collects the outputs in
order, shares the cores among the planner's groups, and tears everything down."""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from ..._errors import StageError, WorkerDied
from ..._ops import log_skipped
from ..._planner import FusedOp, PlanMode, cores, physical
from ..._transport import SHM_DIR, Decoder, cleanup, seal, unseal

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..._graph import Graph, Node
    from ..._report import Recorder
    from .pipe import PipeEnd


from .feeder import Feeder, is_feeder_end
from .forked import Forked, default_method
from .host import caller_log_level, running, ship, worker_main
from .pipe import Waiter, join, pipe
from .plan import Pipes
from .wire import TAIL, Credits, Message, Undecodable, Where, Writer, recv, unreadable

_RUNS: Final = itertools.count()  # numbers this process's runs, for shared-memory names


_POLL: Final = 0.05  # how often the caller checks on workers and the feeders when idle
# Idle for long (a source that waits, an HTTP server with no request): every event wakes the
# wait by itself; the poll's checks (a feeder's error, re-planning) can come this late.
_IDLE_POLL: Final = 0.5


_GRACE: Final = 30.0  # how long finished workers get to run close() before being stopped


_REPLAN_EVERY: Final = 0.5  # seconds between the planner's looks at the groups' costs


RAMP: Final = 4  # one-item messages in flight per stage worker while stages have not said


class Run:
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
        self.method = start_method or default_method()
        # Fork workers are forked here, without multiprocessing (``forked``): loading it would
        # cost every run about 10 ms. Spawn and forkserver workers are its processes.
        self.ctx: Any = None
        if self.method != "fork":
            import multiprocessing

            self.ctx = multiprocessing.get_context(self.method)
        self.plan = Pipes(graph, self.groups)
        self.check_types = check_types
        self.procs: list[tuple[str, Any]] = []  # (stage name, Process or Thread)
        self.controls: list[tuple[str, Any]] = []
        self.feeders: list[Feeder] = []
        self.stop = threading.Event()  # the whole run is being torn down
        # Shared-memory segments of this run are named after it: cleanup() finds them all.
        self.prefix = f"olympipe-{os.getpid()}-{next(_RUNS)}-"
        self.ledger = Credits.create(f"{SHM_DIR}/{self.prefix}ledger", self.plan)
        # Fused groups' workers say which stage they are in, for a death's report.
        self.where_slots: dict[tuple[int, int], int] = {}
        for node in graph.nodes:
            if isinstance(node.op, FusedOp):
                for w in range(self.plan.workers[node.id]):
                    self.where_slots[(node.id, w)] = len(self.where_slots)
        self.where: Where | None = None
        if self.where_slots:
            self.where = Where(f"{SHM_DIR}/{self.prefix}where", len(self.where_slots))
        self.worker_of: dict[int, tuple[int, int]] = {}  # id(process) -> (node, worker)
        self.next_plan = 0.0  # when the planner looks at the groups' costs again
        self.skipped: dict[str, int] = {}  # items on_error="skip" dropped, by stage
        self.attached = 0  # workers that have said they started (the counters mapped)
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
            shared = self.threads or self.method == "fork"
            shipped = ship(node.op, node, imported=not shared)
            op_arg = node.op if shared else shipped
            ranks = self._ranks(node)
            for w in range(plan.workers[node.id]):
                reads = [plan.reads[(node.id, w)][p] for p in node.parents]
                writes = plan.writes.get((node.id, w), {})
                ctl_r, ctl_s = pipe()
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
                    caller_log_level(),
                    self.ledger,
                    [
                        [
                            plan.credit_slots.get((p, pw, node.id, w))
                            for pw in range(plan.workers[p])
                        ]
                        for p in node.parents
                    ],
                    ", ".join(repr(last_stage(graph.nodes[p])) for p in node.parents)
                    or "the source",
                    self.where,
                    self.where_slots.get((node.id, w), 0),
                )
                if self.threads:
                    worker: Any = threading.Thread(
                        target=worker_main,
                        args=args,
                        name=f"olympipe:{node.name}:{w}",
                        daemon=True,
                    )
                elif self.ctx is None:
                    worker = Forked(worker_main, args, f"olympipe:{node.name}:{w}")
                else:
                    worker = self.ctx.Process(
                        target=worker_main,
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
        # The shared counters' files, now that workers exist to remove them if we die.
        if self.ledger is not None:
            self.ledger.make(plan.active)
        if self.where is not None:
            self.where.make()
            self.where.cells()  # mapped here too: a death is read after the file is gone
        if not self.threads:
            for conn in plan.child_side:
                if not is_feeder_end(conn, plan):
                    conn.close()
        for rank, node in enumerate(graph.sources):
            writes = plan.writes.get((node.id, 0), {})
            feeder = Feeder(
                node,
                rank,
                Writer(
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
                ramp=RAMP * sum(plan.workers[n.id] for n in graph.nodes if n.op is not None),
                least=max((n.op.concurrency for n in graph.nodes if n.op is not None), default=1),
            )
            feeder.receivers = [first_stage(graph.nodes[c]) for c in node.children]
            if self.recorder is not None:  # Pipeline.queues: what the source has sent
                self.recorder.sources[node.name] = feeder.sent
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
        waiter = Waiter()
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
            for i in range(len(outputs))
            if -1 - i in self.plan.reorderers
            for conn in outputs[i]
        }
        held: dict[int, dict[int, list[Any]]] = {i: {} for i in set(reordering.values())}
        tails: dict[int, list[list[Any]]] = {i: [] for i in held}
        poll = _POLL
        while live:
            at_end = set(draining.values())
            waiting = {
                outputs[i][expected[i] % len(outputs[i])]: i
                for i in live
                if i not in at_end and i not in held
            }
            waiting.update(draining)
            waiting.update(reordering)
            ready = waiter.wait([*waiting, *controls, *sentinels], poll)
            poll = _POLL if ready else min(2 * poll, _IDLE_POLL)
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
                    msg = recv(obj, self.decoder)
                except Undecodable as exc:
                    name = last_stage(self.graph.nodes[self.graph.outputs[index]])
                    item = "<an output that could not be unpickled in the caller>"
                    raise unreadable(name, item, exc) from exc.__cause__
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
        name = last_stage(self.graph.nodes[self.graph.outputs[index]])
        raise WorkerDied(name, None, None, "it closed its output without ending the stream")

    def _check_feeders(self) -> None:
        for feeder in self.feeders:
            if feeder.error is not None:
                raise feeder.error

    def _read_control(self, conn: PipeEnd, name: str) -> bool:
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
            self.attached += 1
            if self.attached == len(self.procs):  # every worker has the counters mapped
                self._unlink_counters()
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

    def _join(self, worker: Any, timeout: float) -> None:
        if self.threads:
            worker.join(timeout)
        else:
            join(worker, timeout)  # without importing multiprocessing.connection

    def _check_death(self, name: str, process: Any) -> None:
        self._join(process, 1.0)
        code = process.exitcode
        if code not in (0, None):
            # A failure report may still be in flight: let it win, it says more.
            for ctl_name, conn in self.controls:
                if ctl_name == name and not conn.closed and conn.poll(0.2):
                    self._read_control(conn, name)
            hint = ""
            if name not in self.started and self.method != "fork":
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

    def _unlink_counters(self) -> None:
        """Remove the shared counters' files: the mappings outlive them, and a caller killed
        once its workers are gone would leave them in /dev/shm. Done when no worker will map
        them any more: after the last output, or when the run is torn down."""
        if self.ledger is not None:
            self.ledger.unlink()
        if self.where is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.where.path)

    def finish(self) -> None:
        """After the last output: let workers run their class stages' close() and exit."""
        self._unlink_counters()
        self._read_controls()
        # After a limit or timeout, upstream workers may wait on a stalled source: stop them.
        deadline = time.monotonic() + (0.0 if self.exhausted else _GRACE)
        for _, p in self.procs:
            # Keep reading reports meanwhile: a close() that logs must not fill its pipe.
            while p.is_alive() and time.monotonic() < deadline:
                self._join(p, min(_POLL, max(0.0, deadline - time.monotonic())))
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
            while any(running(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.005)
        seal(self.prefix)  # the feeder threads (and thread workers) create no segment after
        with contextlib.suppress(OSError):
            cleanup(self.prefix)

    def close(self) -> None:
        """Stop everything: feeders, workers, pipes. Safe to call more than once."""
        if self.stop.is_set():
            return
        self.stop.set()
        self._unlink_counters()
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
            self._join(p, max(0.0, deadline - time.monotonic()))
            if not self.threads and p.is_alive():
                p.kill()
                self._join(p, 1.0)
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
        # Segments that messages never read, or a killed worker, left behind; a feeder still
        # running (its source stalled) creates none after this.
        seal(self.prefix)
        cleanup(self.prefix)
        if not any(f.is_alive() for f in self.feeders) and not (
            self.threads and any(p.is_alive() for _, p in self.procs)
        ):
            unseal(self.prefix)


def first_stage(node: Node) -> str:
    """The name of the stage (as written) that reads a physical node's inputs."""
    return node.op.stages[0][0] if isinstance(node.op, FusedOp) else node.name


def last_stage(node: Node) -> str:
    """The name of the stage (as written) whose outputs leave a physical node."""
    return node.op.stages[-1][0] if isinstance(node.op, FusedOp) else node.name
