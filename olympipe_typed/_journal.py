"""Resumable runs: ``journal=path`` on ``run``, ``stream`` and ``wait_for_completion``.

The journal is an SQLite database in WAL mode. It holds:

- ``meta``: the graph's shape (each stage's name and kind, in order), what the journal
  keeps (``outputs`` for ``run``/``stream``, ``done`` for ``wait_for_completion``), and
  whether the source was finished;
- ``chunks``: one row per batch of source items done (as a message of the run came out),
  a pickle of ``[(first source index, count, [outputs]), ...]`` (no outputs for ``done``).

A journaled run carries *envelopes*: the source yields ``(first, count, [items])`` for
``count`` consecutive source items, and every stage turns an envelope into exactly one
envelope, ``(first, count, [what it made of those items])`` (see ``Processor._envelop``),
so what reaches the caller says which source items it came from. Those items are done when
every path from the source to the output has delivered its envelope (a fan-out merged back
has several). For ``stream()`` their row is committed before any of their outputs is handed
to the caller; ``run()`` and ``wait_for_completion()`` commit every ``_COMMIT_EVERY`` seconds
and when they stop, so a SIGKILL may cost them that much work again.
A resumed run reads the source again, skips the done ranges, and starts the rest.

An envelope holds as many source items as the pipeline gets through in about
``_CHUNK_SECONDS`` (measured at the output as the run goes, one item at first, 4,096 at
most): an item that takes seconds travels alone, as without a journal, and a million tiny
items do not pay per-item bookkeeping. A graph that merges flows (a fan-out gathered back)
keeps one item per envelope, so that the merge interleaves each item's branches as it does
without a journal.

``stream()`` also keeps, in ``<journal>-cursor`` (8 bytes, memory-mapped), how many of the
journal's outputs the caller has taken: an output counts once the caller comes back for
the next one, or closes the stream (a ``break``, Ctrl-C). A store to a shared mapping
survives the process being killed (the page belongs to the kernel), at the cost of a
memory write per output where an SQLite commit would cost tens of microseconds. After a
crash, outputs journaled but not yet taken are yielded first.

Only stages that work on one item at a time can be resumed this way: a batch, reduce,
limit or timeout holds state across items that the journal does not keep, so a graph with
one raises ValueError. Commits use ``synchronous=NORMAL``: durable when the process dies
(SIGKILL, a crash); a power loss may lose the last commits, never the database.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import os
import pickle
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from ._errors import JournalMismatch, StageError
from ._graph import Graph, Node, SourceSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

Mode = Literal["outputs", "done"]
_FORMAT: Final = 1  # the layout of the tables; a journal of another format is refused
_JOURNALED: Final = frozenset({"map", "flat", "filter", "merge"})
_CHUNK_SECONDS: Final = 0.005  # the pipeline's time for one envelope's items, aimed at
_MAX_CHUNK: Final = 4096  # source items per envelope, at most
INF: Final = float("inf")
_COMMIT_EVERY: Final = 0.05  # seconds between commits of a run() or wait_for_completion()


def _signature(graph: Graph, mode: Mode) -> str:
    nodes = [
        [n.name, "source" if n.op is None else n.op.kind, sorted(n.parents)] for n in graph.nodes
    ]
    return json.dumps({"format": _FORMAT, "keeps": mode, "nodes": nodes, "outputs": graph.outputs})


def check_journaled(graph: Graph) -> None:
    """Raise ValueError unless every stage of ``graph`` can be resumed item by item."""
    if len(graph.outputs) != 1:
        msg = "journal= takes one pipeline (run_all() runs several: journal each on its own)"
        raise ValueError(msg)
    for node in graph.nodes:
        if node.op is not None and node.op.kind not in _JOURNALED:
            msg = (
                f"journal= cannot resume stage {node.name!r}: a {node.op.kind} stage holds "
                "state across items (a partial batch, an accumulator) that the journal does "
                "not keep; journal= takes map, flat and filter stages, fan-outs and gathers"
            )
            raise ValueError(msg)


class Journal:
    """One journal file, opened for one run."""

    def __init__(
        self, path: str | os.PathLike[str], graph: Graph, mode: Mode, *, eager: bool = True
    ) -> None:
        """``eager``: commit each batch of done items before ``take`` returns (a stream hands
        them to the caller at once); else every ``_COMMIT_EVERY`` seconds, and at the end."""
        check_journaled(graph)
        self.eager = eager
        self._held: list[tuple[bytes]] = []
        self._last_commit = time.perf_counter()
        self.path = os.fspath(path)
        self.mode: Mode = mode
        self.graph = graph
        # Envelopes per source item that reach the output: one per path from the source.
        paths: dict[int, int] = {}
        for node in graph.nodes:
            paths[node.id] = 1 if node.source is not None else sum(paths[p] for p in node.parents)
        self.paths = paths[graph.outputs[0]]
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open(_signature(graph, mode))
        except BaseException:
            self.db.close()
            raise
        # What earlier runs did: the done ranges, and (for outputs) the chunks in order.
        done: list[tuple[int, int]] = []
        self.recorded: list[tuple[int, list[Any]]] = []
        for (blob,) in self.db.execute("SELECT items FROM chunks ORDER BY id"):
            chunk: list[tuple[int, int, list[Any]]] = pickle.loads(blob)
            for first, count, outputs in chunk:
                done.append((first, first + count))
                self.recorded.append((first, outputs))
        self.done = _merged(done)
        self.finished = self._meta("finished") == "1"
        # Only a stream counts what its caller took (run() returns everything).
        self.cursor = _Cursor(self.path + "-cursor") if eager and mode == "outputs" else None
        # Envelopes of this run whose items still wait for another path's envelope.
        self._partial: dict[int, tuple[int, int, list[Any]]] = {}
        # Source items per envelope: one until the run has shown how fast it goes (see above).
        self.merges = any(len(n.parents) > 1 for n in graph.nodes)
        self.chunk = 1
        self._started: float | None = None
        self._through = 0  # source items done in this run

    def _open(self, signature: str) -> None:
        db = self.db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "items BLOB NOT NULL)"
            )
            found = self._meta("signature")
            if found is None:
                db.execute("INSERT INTO meta VALUES ('signature', ?)", (signature,))
            elif found != signature:
                raise JournalMismatch(self.path, _difference(found, signature))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def graph_to_run(self) -> Graph:
        """The graph this run executes: envelopes everywhere, the done items left out."""
        nodes: list[Node] = []
        for node in self.graph.nodes:
            op = node.op
            if op is not None and op.kind != "merge":
                op = op.replace(enveloped=True)
            spec = node.source
            if spec is not None:
                spec = SourceSpec(
                    None, self._envelopes, (spec,), name=spec.name, weight=self._chunk
                )
            copy = Node(node.id, node.name, op, spec, list(node.parents))
            copy.children = list(node.children)
            nodes.append(copy)
        return Graph(nodes, list(self.graph.outputs))

    def outputs(self, events: Iterable[tuple[int, list[Any]]]) -> Iterator[list[Any]]:
        """Run ``events`` (the envelopes of ``graph_to_run()``), journal them, and yield the
        outputs of each batch of source items done: the earlier runs' first, then this one's."""
        for _, outputs in self.recorded:
            yield outputs
        for _, envelopes in events:
            for _, outputs in self.take(envelopes):
                yield outputs
        self.finish()

    def untaken(self, events: Iterable[tuple[int, list[Any]]]) -> Iterator[object]:
        """``outputs``, one at a time, without those the caller took in earlier runs. Each
        is counted as taken by ``taken()``, which the caller's own generator (``stream()``)
        calls: a Ctrl-C between here and the caller closes this generator at its yield too,
        while the output never reached the caller."""
        cursor = self.cursor
        assert cursor is not None
        skip = cursor.taken
        for outputs in self.outputs(events):
            for output in outputs:
                if skip:
                    skip -= 1
                    continue
                yield output

    def taken(self) -> None:
        """The caller has taken the last output ``untaken`` gave."""
        assert self.cursor is not None
        self.cursor.advance()

    def _chunk(self) -> int:
        return self.chunk

    def _envelopes(self, spec: SourceSpec) -> Iterator[tuple[int, int, list[object]]]:
        """The source's items in envelopes, without those done already (read, not run).
        Runs in the thread that reads the source; reads ``self.chunk``, set by ``take``."""
        source = iter(spec.open())
        index = 0
        for start, end in [*self.done, (INF, INF)]:
            while index < start:  # items to run, up to the next done range
                size = self.chunk if start == INF else min(self.chunk, int(start) - index)
                items = list(itertools.islice(source, size))
                if items:
                    yield index, len(items), items
                    index += len(items)
                if len(items) < size:
                    return  # the source is exhausted
            if start != INF:  # a done range: read its items, run none of them
                skipped = sum(1 for _ in itertools.islice(source, int(end) - index))
                index += skipped
                if index < end:
                    return

    def take(self, envelopes: list[Any]) -> list[tuple[int, list[Any]]]:
        """Envelopes that reached the output: journal the source items now done (committed
        before this returns) and return them, (first index, outputs), in arrival order."""
        complete: list[tuple[int, int, list[Any]]] = []
        for first, count, outputs in envelopes:
            if self.paths == 1:
                complete.append((first, count, outputs))
                continue
            seen, _, held = self._partial.get(first, (0, count, []))
            held = held + outputs
            if seen + 1 == self.paths:
                del self._partial[first]
                complete.append((first, count, held))
            else:
                self._partial[first] = (seen + 1, count, held)
        if not complete:
            return []
        self._commit(complete)
        self._pace(sum(count for _, count, _ in complete))
        return [(first, outputs) for first, _, outputs in complete]

    def _pace(self, items: int) -> None:
        """Size the next envelopes by the pace the run has kept so far."""
        now = time.perf_counter()
        if self._started is None:  # the first envelopes out: the clock starts
            self._started = now
            return
        self._through += items
        elapsed = now - self._started
        if self.merges or elapsed <= 0:
            return
        rate = self._through / elapsed
        self.chunk = int(max(1, min(_MAX_CHUNK, rate * _CHUNK_SECONDS)))

    def _commit(self, complete: list[tuple[int, int, list[Any]]]) -> None:
        empty: list[Any] = []
        rows = complete if self.mode == "outputs" else [(i, n, empty) for i, n, _ in complete]
        try:
            blob = pickle.dumps(rows, protocol=5)
        except Exception as exc:
            stage = self.graph.nodes[self.graph.outputs[0]].name
            index = rows[0][0]
            msg = f"an output could not be pickled into the journal: {type(exc).__name__}: {exc}"
            raise StageError(stage, f"<outputs of source items from {index} on>", msg) from exc
        self._held.append((blob,))
        now = time.perf_counter()
        if self.eager or now - self._last_commit >= _COMMIT_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit the rows held (one transaction)."""
        if not self._held:
            return
        held, self._held = self._held, []
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO chunks (items) VALUES (?)", held)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._last_commit = time.perf_counter()

    def finish(self) -> None:
        """The source is done and every item's outputs journaled."""
        self.flush()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', '1')")
        self.finished = True

    def close(self) -> None:
        """Commit what is held (a run stopped by an error or Ctrl-C keeps what it did)."""
        with contextlib.suppress(sqlite3.Error):
            self.flush()
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        if self.cursor is not None:
            self.cursor.close()


def _difference(found: str, wanted: str) -> str:
    old, new = json.loads(found), json.loads(wanted)
    if old.get("keeps") != new.get("keeps"):
        how = {"outputs": "run() or stream()", "done": "wait_for_completion()"}
        return (
            f"it was written by {how.get(old.get('keeps'), '?')}, "
            f"and is now read by {how.get(new.get('keeps'), '?')}"
        )
    shape = [f"{name} ({kind})" for name, kind, _ in old.get("nodes", [])]
    now = [f"{name} ({kind})" for name, kind, _ in new.get("nodes", [])]
    return f"it was written by the graph {shape}, this one is {now}"


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) ranges, sorted, with overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class _Cursor:
    """How many of the journal's outputs the caller has taken: 8 bytes, memory-mapped."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < 8:  # new, or cut short before any output was taken
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        self._view = memoryview(self._map).cast("Q")

    @property
    def taken(self) -> int:
        return int(self._view[0])

    def advance(self) -> None:
        self._view[0] += 1

    def close(self) -> None:
        self._view.release()
        self._map.close()
