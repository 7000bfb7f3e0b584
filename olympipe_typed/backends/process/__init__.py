r"""The process and thread backends: the workers of each group of the plan run on their own,
chained by pipes.

    feeder --pipe--> [group A w0] --pipe--> [stage B w0] --pipe--> collector (caller)
    (thread)    \--> [group A w1] --pipe--/                         (the run generator)

The files follow the data's way: ``plan`` (which pipes each worker reads and writes, and
how), ``feeder`` (the source, cut into messages), ``host`` and ``worker`` (a worker's process
and its loop), ``wire`` (messages and the counters that deal them), ``collector`` (the
caller's side: start, outputs in order, re-planning, teardown), ``pipe`` (the pipes
themselves, without ``multiprocessing.connection``), ``forked`` (fork workers, without
``multiprocessing``) and ``signals``. The graph
they run is the planner's physical one (``_planner``): a fused chain of stages is one node.

Data moves in *messages*: ``(seq, final, items, keys)``. The feeder cuts the source into
messages numbered 0, 1, 2, ...; every worker turns each message it receives into exactly one
message with the same ``seq`` (maybe empty), so a message number means the same slice of the
source at every node.

Order: a node with several workers gives each message to a free worker (the one with the
least queued, counted in shared memory), whose outputs leave under the message's number, in
whatever order the workers finish. The next reader that needs order (a one-worker node, or
the caller) holds what comes early and hands messages on in number order. Where messages
enter such workers, the *reorder window* bounds how far past the oldest message still awaited
they may go (in messages, items and bytes), so a reader holds little however slow one item
is. In graphs that merge flows, and downstream of time-based stages, a node with ``k``
workers gives message ``seq`` to worker ``seq % k`` instead, and a reader wanting message
``seq`` reads the one pipe it arrives on.

End of stream: a worker that finds ``END`` sends one last message, ``TAIL`` (what ``flush()``
emits: a partial batch, a reduction), to the first worker of each child, and then ``END`` to
every pipe it writes. Readers hand TAILs on after every numbered message.

Fan-in (``|`` fan-out merged, gather): the merging worker reads message ``seq`` from each
parent and sorts their items by *key*. Keys exist only in graphs that merge: ``(source index,
source rank)`` at the source, ``+ (j,)`` for the j-th output of a flat or batching stage,
``+ (b,)`` when entering the b-th child of a node with several children. Sorting by key
reproduces the inline backend's depth-first order exactly.

Time-based stages (timeouts, temporal batches) wake up while waiting and send *partial*
messages (``final=False``) for the ``seq`` they are waiting on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .collector import Run
from .signals import Signals

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..._graph import Graph
    from ..._planner import PlanMode
    from ..._report import Recorder


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
    run = Run(
        graph,
        threads=threads,
        check_types=check_types,
        start_method=start_method,
        recorder=recorder,
        plan=plan,
    )
    signals = Signals(run)
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
