"""What a run did, stage by stage: the run report, live progress, and the numbers behind them.

Every worker measures its own time in three parts: *busy* (running the stage's
code), *blocked* (handing outputs on: pickling, and waiting while the next
stage's queue is full) and *waiting* (the rest: waiting for input). The
bottleneck is the stage whose workers were busy the largest share of their
time; its hint says whether more workers would help.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, Final, TextIO, final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._failures import Failure, FailureLog
    from ._graph import Graph
    from ._planner import Group, Plan

_BUCKETS: Final = 400  # a worker's timeline keeps at most this many buckets
_FIRST_WIDTH: Final = 0.05  # seconds per timeline bucket to begin with; doubles as needed
_BUSY: Final = 0.8  # a stage busier than this share of its time holds the pipeline back


class Timeline:
    """Busy seconds per time bucket, for one worker; the buckets widen as the run goes on."""

    __slots__ = ("buckets", "origin", "width")

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.width = _FIRST_WIDTH
        self.buckets: list[float] = []

    def add(self, start: float, end: float) -> None:
        """Count the busy interval [start, end), split across the buckets it covers."""
        width = self.width
        first = int((start - self.origin) / width)
        last = int((end - self.origin) / width)
        while last >= _BUCKETS:
            self._widen()
            width = self.width
            first = int((start - self.origin) / width)
            last = int((end - self.origin) / width)
        buckets = self.buckets
        if last >= len(buckets):
            buckets.extend([0.0] * (last + 1 - len(buckets)))
        if first == last:
            buckets[first] += end - start
            return
        buckets[first] += self.origin + (first + 1) * width - start
        for i in range(first + 1, last):
            buckets[i] += width
        buckets[last] += end - (self.origin + last * width)

    def _widen(self) -> None:
        pairs = self.buckets
        self.buckets = [sum(pairs[i : i + 2]) for i in range(0, len(pairs), 2)]
        self.width *= 2

    def resampled(self, origin: float, width: float, count: int) -> list[float]:
        """Busy seconds per bucket of another grid (the report's): each bucket's share."""
        out = [0.0] * count
        for i, busy in enumerate(self.buckets):
            if not busy:
                continue
            mid = self.origin + (i + 0.5) * self.width - origin
            j = min(count - 1, max(0, int(mid / width)))
            out[j] += busy
        return out


class WorkerStats:
    """One worker's numbers, sent to the caller when it ends (a plain picklable object)."""

    __slots__ = (
        "blocked",
        "busy",
        "cpu",
        "ended",
        "items_in",
        "items_out",
        "reads",
        "ready_reads",
        "started",
        "timeline",
        "worker",
    )

    def __init__(self, now: float, worker: int = 0) -> None:
        self.worker = worker
        self.started = now
        self.ended = now
        self.busy = 0.0
        self.cpu = 0.0  # CPU seconds of the busy time (less: waiting for I/O, or for a core)
        self.blocked = 0.0
        self.items_in = 0
        self.items_out = 0
        self.reads = 0  # messages read ...
        self.ready_reads = 0  # ... of which were already waiting: the input queue had some
        self.timeline = Timeline(now)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for k, v in zip(self.__slots__, state, strict=True):
            setattr(self, k, v)


@final
class StageReport:
    """One stage's numbers over a run (its workers summed)."""

    __slots__ = (
        "blocked",
        "busy",
        "cpu",
        "items_in",
        "items_out",
        "name",
        "queue_fill",
        "skipped",
        "timeline",
        "waiting",
        "workers",
    )

    def __init__(
        self,
        name: str,
        workers: int,
        items_in: int,
        items_out: int,
        busy: float,
        waiting: float,
        blocked: float,
        queue_fill: float | None,
        skipped: int = 0,
        timeline: Sequence[float] = (),
        cpu: float = 0.0,
    ) -> None:
        self.name = name
        #: How many workers ran the stage.
        self.workers = workers
        self.items_in = items_in
        self.items_out = items_out
        #: Seconds the workers spent running the stage's code (summed over workers).
        self.busy = busy
        #: CPU seconds the workers used while busy (busy time also counts waiting for I/O, and
        #: for a CPU when there are more workers than CPUs). Process and thread workers read
        #: their CPU clock around a message every 10 ms at most and scale the busy time by
        #: what those messages used, so that short messages do not pay for the clock.
        self.cpu = cpu
        #: Seconds the workers spent waiting for input.
        self.waiting = waiting
        #: Seconds the workers spent handing outputs on (pickling, or the next queue full).
        self.blocked = blocked
        #: Share of reads that found input already queued (1.0: never starved), if measured
        #: (process and thread workers look on a sample of their reads).
        self.queue_fill = queue_fill
        #: Items dropped by ``on_error="skip"``.
        self.skipped = skipped
        #: Share of the workers' capacity in use, per bucket of ``RunReport.bucket`` seconds.
        self.timeline = tuple(timeline)

    @property
    def utilization(self) -> float:
        """Share of the workers' time spent busy (0..1)."""
        total = self.busy + self.waiting + self.blocked
        return self.busy / total if total > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"StageReport({self.name!r}, workers={self.workers}, items_in={self.items_in}, "
            f"items_out={self.items_out}, busy={self.busy:.3f}, waiting={self.waiting:.3f}, "
            f"blocked={self.blocked:.3f}, utilization={self.utilization:.2f})"
        )


@final
class RunReport:
    """What a run did: per stage, items in/out, busy/waiting/blocked time, and the bottleneck.

    Every run leaves one on its pipelines (``pipeline.last_report``). ``print(report)``
    shows a table and a one-line hint; ``report.plot(path)`` draws each stage's
    utilization over time (needs matplotlib: ``pip install 'olympipe_typed[plot]'``).
    """

    __slots__ = ("backend", "bucket", "completed", "cores", "failures", "plan", "stages", "wall")

    def __init__(
        self,
        backend: str,
        wall: float,
        stages: Sequence[StageReport],
        *,
        bucket: float = 0.0,
        completed: bool = True,
        cores: int | None = None,
        failures: Sequence[Failure[Any]] = (),
        plan: Plan | None = None,
    ) -> None:
        self.backend = backend
        #: Seconds from the start of the run to its end.
        self.wall = wall
        self.stages = tuple(stages)
        #: Seconds per timeline bucket.
        self.bucket = bucket
        #: False when the run ended by an error or was left early.
        self.completed = completed
        #: CPUs this process may use (the hint says when they were all busy).
        self.cores = cores
        #: The items that failed under ``on_error="collect"``, in the order they were reported.
        self.failures: list[Failure[Any]] = list(failures)
        #: The physical plan: which stages ran fused in which group, and its workers over time.
        self.plan = plan

    def stage(self, name: str) -> StageReport:
        """The report of the stage called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        msg = f"no stage named {name!r} in this run (stages: {[s.name for s in self.stages]})"
        raise KeyError(msg)

    @property
    def bottleneck(self) -> StageReport | None:
        """The stage busy the largest share of its workers' time, if any stage worked."""
        working = [s for s in self.stages if s.busy > 0]
        return max(working, key=lambda s: s.utilization, default=None)

    @property
    def hint(self) -> str:
        """One line: which stage held the run back, and what to do about it."""
        slow = self.bottleneck
        if slow is None:
            return "no stage did any work"
        share = f"{slow.name} was busy {slow.utilization:.0%} of the time"
        cpu = sum(s.cpu for s in self.stages)
        if self.cores and self.wall > 0 and cpu / self.wall > _BUSY * self.cores:
            heavy = max(self.stages, key=lambda s: s.cpu)
            busy = (
                f"the stages kept all {self.cores} CPUs busy ({cpu / self.wall:.1f} of "
                f"{self.cores}; {heavy.name} used the most): more workers will not help on this "
                "machine"
            )
            if self.plan is not None and self.plan.apart:
                n = self.plan.crossings
                return (
                    f"{busy}; {', '.join(self.plan.apart)} run in processes of their own "
                    "because of their workers=: without it the planner fuses them with their "
                    f"neighbours, and each item crosses {n} process "
                    f"boundar{'y' if n == 1 else 'ies'} fewer"
                )
            return f"{busy}, a faster stage or more machines will"
        if slow.utilization < _BUSY:
            return (
                f"no stage was busy most of the time ({share}): the source, or the code "
                "consuming the results, set the pace"
            )
        group = self._group_of(slow.name)
        if group is not None and group.auto:
            if slow.cpu < 0.5 * slow.busy:  # waiting (I/O, sleep) more than computing
                return (
                    f"{share}, waiting more than computing ({slow.cpu / slow.busy:.0%} CPU) "
                    f"in a group the planner sized to the cores ({group.name}): give it "
                    f"workers of its own (workers={2 * group.workers} or more)"
                )
            return (
                f"{share}, in a group the planner sized to the cores ({group.name}): a faster "
                "stage function, or more cores, will help"
            )
        return f"{share}; give it more workers (workers={slow.workers + 1} or more)"

    def _group_of(self, stage: str) -> Group | None:
        if self.plan is None:
            return None
        try:
            return self.plan.group_of(stage)
        except KeyError:
            return None

    def __str__(self) -> str:
        head = (
            "stage",
            "workers",
            "in",
            "out",
            "busy s",
            "cpu s",
            "wait s",
            "blocked s",
            "util",
            "items/s",
        )
        rows: list[tuple[str, ...]] = [head]
        for s in self.stages:
            rate = s.items_out / self.wall if self.wall > 0 else 0.0
            rows.append(
                (
                    s.name,
                    str(s.workers),
                    str(s.items_in),
                    str(s.items_out),
                    f"{s.busy:.2f}",
                    f"{s.cpu:.2f}",
                    f"{s.waiting:.2f}",
                    f"{s.blocked:.2f}",
                    f"{s.utilization:.0%}",
                    f"{rate:,.0f}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        state = "" if self.completed else " (did not complete)"
        title = f"run report: {self.wall:.2f} s on backend {self.backend!r}{state}"
        tail = [] if self.plan is None else str(self.plan).splitlines()
        tail.append(f"bottleneck: {self.hint}")
        if self.failures:
            counts: dict[str, int] = {}
            for f in self.failures:
                counts[f.stage] = counts.get(f.stage, 0) + 1
            per = ", ".join(f"{stage} {n}" for stage, n in counts.items())
            tail.append(f"failures collected: {len(self.failures)} ({per})")
        return "\n".join([title, *lines, *tail])

    def __repr__(self) -> str:
        return f"<RunReport {self.backend!r} {self.wall:.3f} s, {len(self.stages)} stages>"

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Write a PNG of each stage's utilization over time: one lane per stage."""
        import importlib

        try:
            mpl = importlib.import_module("matplotlib")
        except ImportError as exc:
            msg = "report.plot() needs matplotlib: pip install 'olympipe_typed[plot]'"
            raise ImportError(msg) from exc
        mpl.use("Agg", force=False)
        # Plain Any: matplotlib's hints are partial, and this is all the drawing there is.
        plt: Any = importlib.import_module("matplotlib.pyplot")

        lanes = self.stages or (StageReport("(no stages)", 0, 0, 0, 0.0, 0.0, 0.0, None),)
        fig, axes = plt.subplots(
            len(lanes), 1, sharex=True, squeeze=False, figsize=(8, 0.9 + 0.7 * len(lanes))
        )
        for ax, s in zip(axes[:, 0], lanes, strict=True):
            xs = [i * self.bucket for i in range(len(s.timeline))]
            ax.fill_between(xs, list(s.timeline), step="post", alpha=0.7)
            ax.set_ylim(0, 1.05)
            ax.set_yticks([])
            ax.set_ylabel(
                f"{s.name}\n×{s.workers} {s.utilization:.0%}",
                rotation=0,
                ha="right",
                va="center",
                fontsize=8,
            )
        axes[-1, 0].set_xlabel("seconds")
        axes[0, 0].set_title(f"utilization per stage ({self.wall:.2f} s, {self.backend})")
        fig.tight_layout()
        fig.savefig(path, format="png")
        plt.close(fig)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON-ready)."""
        return {
            "backend": self.backend,
            "wall": self.wall,
            "completed": self.completed,
            "bottleneck": None if self.bottleneck is None else self.bottleneck.name,
            "hint": self.hint,
            "failures": len(self.failures),
            "stages": [
                {
                    "name": s.name,
                    "workers": s.workers,
                    "items_in": s.items_in,
                    "items_out": s.items_out,
                    "busy": s.busy,
                    "cpu": s.cpu,
                    "waiting": s.waiting,
                    "blocked": s.blocked,
                    "utilization": s.utilization,
                    "queue_fill": s.queue_fill,
                    "skipped": s.skipped,
                }
                for s in self.stages
            ],
            "plan": None if self.plan is None else self.plan.to_dict(),
        }


class Recorder:
    """The caller's side: gathers workers' numbers into a report, and draws live progress."""

    def __init__(
        self, graph: Graph, backend: str, *, progress: bool, failures: FailureLog | None = None
    ) -> None:
        self.graph = graph
        self.backend = backend
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.completed = False
        self.workers: dict[str, list[WorkerStats]] = {}
        self.skipped: dict[str, int] = {}
        self.counts: dict[str, dict[int, tuple[int, int]]] = {}  # live: stage -> worker -> in/out
        self.progress = _Progress(graph) if progress else None
        if failures is None:
            from ._failures import FailureLog

            failures = FailureLog(None, None)
        self.failure_log = failures
        self.plan: Plan | None = None  # the backend's physical plan, once it has made it
        # Items each source has sent so far: a count, or a function that reads it live.
        self.sources: dict[str, int | Callable[[], int]] = {}

    def fail(self, stage: str, worker: int, failures: list[Failure[Any]], entered: int) -> None:
        """A worker's newly collected failures (raises FailureBudgetExceeded when spent)."""
        self.failure_log.add(stage, worker, failures, entered)

    def check_budget(self) -> None:
        """At the end of a run: the failure budget against each stage's final item count."""
        entered: dict[str, int] = {
            stage: sum(w.items_in for w in stats) for stage, stats in self.workers.items()
        }
        self.failure_log.check(final=True, entered=entered)

    def stats(self, stage: str, stats: WorkerStats) -> None:
        """A worker's final numbers (it has finished)."""
        self.workers.setdefault(stage, []).append(stats)
        self.live(stage, stats.worker, stats.items_in, stats.items_out)

    def skip(self, stage: str, count: int) -> None:
        self.skipped[stage] = self.skipped.get(stage, 0) + count

    def live(self, stage: str, worker: int, items_in: int, items_out: int) -> None:
        """A worker's running totals: progress bars move."""
        self.counts.setdefault(stage, {})[worker] = (items_in, items_out)
        if self.progress is not None:
            self.progress.show(self.counts)

    def totals(self, stage: str) -> tuple[int, int]:
        """Items a stage has taken and emitted so far (``Pipeline.queues``)."""
        counts = list(self.counts.get(stage, {}).values())
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def fed(self, stage: str) -> int:
        """Items a stage's parents have sent it so far (each parent sends it every item)."""
        node = next((n for n in self.graph.nodes if n.name == stage), None)
        if node is None:
            return 0
        total = 0
        for parent in (self.graph.nodes[p] for p in node.parents):
            if parent.op is not None:
                total += self.totals(parent.name)[1]
                continue
            count = self.sources.get(parent.name)
            if count is None:  # a backend that does not count its sources: nothing waiting
                return self.totals(stage)[0]
            total += count if isinstance(count, int) else count()
        return total

    def finish(self, *, completed: bool) -> None:
        # The sources' last counts, not the feeders that kept them.
        self.sources = {k: v if isinstance(v, int) else v() for k, v in self.sources.items()}
        if self.ended is None:
            self.ended = time.perf_counter()
            self.completed = completed
            if self.progress is not None:
                self.progress.show(self.counts, force=True)
                self.progress.close()

    def report(self) -> RunReport:
        end = self.ended if self.ended is not None else time.perf_counter()
        wall = max(end - self.started, 1e-9)
        bucket = _FIRST_WIDTH
        while wall / bucket > _BUCKETS:
            bucket *= 2
        count = max(1, int(wall / bucket) + 1)
        stages: list[StageReport] = []
        for node in self.graph.nodes:
            if node.op is None:
                continue
            stats = self.workers.get(node.name, [])
            stages.append(self._stage(node.name, stats, wall, bucket, count))
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return RunReport(
            self.backend,
            wall,
            stages,
            bucket=bucket,
            completed=self.completed,
            cores=cores,
            failures=self.failure_log.failures,
            plan=self.plan,
        )

    def _stage(
        self, name: str, stats: list[WorkerStats], wall: float, bucket: float, count: int
    ) -> StageReport:
        busy = sum(w.busy for w in stats)
        cpu = sum(w.cpu for w in stats)
        blocked = sum(w.blocked for w in stats)
        alive = sum(max(0.0, w.ended - w.started) for w in stats)
        waiting = max(0.0, alive - busy - blocked)
        reads = sum(w.reads for w in stats)
        fill = sum(w.ready_reads for w in stats) / reads if reads else None
        lane = [0.0] * count
        for w in stats:
            for i, b in enumerate(w.timeline.resampled(self.started, bucket, count)):
                lane[i] += b
        n = max(1, len(stats))
        timeline = [min(1.0, b / (bucket * n)) for b in lane]
        if not stats:  # the worker never reported: live counts are all there is
            live = self.counts.get(name, {}).values()
            items_in, items_out = sum(c[0] for c in live), sum(c[1] for c in live)
        else:
            items_in = sum(w.items_in for w in stats)
            items_out = sum(w.items_out for w in stats)
        return StageReport(
            name,
            len(stats),
            items_in,
            items_out,
            busy,
            waiting,
            blocked,
            fill,
            self.skipped.get(name, 0),
            timeline,
            cpu,
        )


class _Progress:
    """Live per-stage progress: tqdm bars when tqdm is installed, else one line on stderr."""

    def __init__(self, graph: Graph, stream: TextIO | None = None) -> None:
        self.names = [n.name for n in graph.nodes if n.op is not None]
        self.totals = _totals(graph)
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.bars: list[Any] | None = None
        try:
            from tqdm import tqdm
        except ImportError:
            return
        width = max((len(n) for n in self.names), default=0)
        shape: dict[str, Any] = {"dynamic_ncols": True}
        size = _screen(self.stream)
        if size is not None and 0 in size:
            # A terminal that reports no size (a pseudo-terminal nobody sized, as some CI
            # runners and `docker exec -t` give): tqdm would draw blank lines only.
            shape = {"ncols": size[0] or 80, "nrows": max(size[1], len(self.names) + 1)}
        self.bars = [
            tqdm(
                total=self.totals.get(name),
                desc=name.ljust(width),
                unit="it",
                position=i,
                leave=True,
                file=self.stream,
                **shape,
            )
            for i, name in enumerate(self.names)
        ]

    def show(self, counts: dict[str, dict[int, tuple[int, int]]], *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        done = {name: sum(c[0] for c in counts.get(name, {}).values()) for name in self.names}
        if self.bars is not None:
            for bar, name in zip(self.bars, self.names, strict=True):
                bar.update(done[name] - bar.n)
            return
        parts = [_count(name, done[name], self.totals.get(name)) for name in self.names]
        self.stream.write("\r" + " | ".join(parts))
        self.stream.flush()

    def close(self) -> None:
        if self.bars is not None:
            for bar in self.bars:
                bar.close()
        else:
            self.stream.write("\n")
            self.stream.flush()


def _screen(stream: TextIO) -> tuple[int, int] | None:
    """(columns, lines) of the terminal ``stream`` writes to; None when it is not one."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
    return size.columns, size.lines


def _count(name: str, done: int, total: int | None) -> str:
    return f"{name} {done}/{total}" if total is not None else f"{name} {done}"


def _totals(graph: Graph) -> dict[str, int]:
    """Items each stage will receive, where the source's length says (one source, maps)."""
    totals: dict[int, int] = {}
    for node in graph.nodes:
        if node.source is not None:
            length = node.source.length()
            if length is not None:
                totals[node.id] = length
            continue
        if len(node.parents) != 1 or node.parents[0] not in totals:
            continue
        parent = graph.nodes[node.parents[0]]
        if parent.op is None or parent.op.kind == "map":
            totals[node.id] = totals[node.parents[0]]
    return {graph.nodes[i].name: t for i, t in totals.items() if graph.nodes[i].op is not None}
