"""Resumable runs: ``journal=path`` on ``run``, ``stream`` and ``wait_for_completion``.

The journal is an SQLite database in WAL mode. It holds:

- ``meta``: the graph's shape (each stage's name and kind, in order), what the journal
  keeps (``outputs`` for ``run``/``stream``, ``done`` for ``wait_for_completion``), and
  whether the source was finished;
- ``chunks``: one row per batch of source items done (as a message of the run came out),
  a pickle of ``[(source index, [outputs]), ...]`` (just the indexes for ``done``).

A journaled run carries *envelopes*: the source yields ``(index, [item])`` and every stage
turns an envelope into exactly one envelope, ``(index, [what it made of those items])``
(see ``Processor._envelop``), so what reaches the caller says which source item it came
from. A source item is done when every path from the source to the output has delivered
its envelope (a fan-out merged back has several); its chunk is committed before any of its
outputs is handed to the caller. A resumed run reads the source again, skips the done
indexes, and starts the rest.

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
import json
import mmap
import os
import pickle
import sqlite3
from typing import TYPE_CHECKING, Any, Final, Literal

from ._errors import JournalMismatch, StageError
from ._graph import Graph, Node, SourceSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

Mode = Literal["outputs", "done"]
_FORMAT: Final = 1  # the layout of the tables; a journal of another format is refused
_JOURNALED: Final = frozenset({"map", "flat", "filter", "merge"})


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

    def __init__(self, path: str | os.PathLike[str], graph: Graph, mode: Mode) -> None:
        check_journaled(graph)
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
        # What earlier runs did: every done index, and (for outputs) the chunks in order.
        self.done: set[int] = set()
        self.recorded: list[tuple[int, list[Any]]] = []
        for (blob,) in self.db.execute("SELECT items FROM chunks ORDER BY id"):
            chunk: list[tuple[int, list[Any]]] = pickle.loads(blob)
            for index, outputs in chunk:
                self.done.add(index)
                self.recorded.append((index, outputs))
        self.finished = self._meta("finished") == "1"
        self.cursor = _Cursor(self.path + "-cursor") if mode == "outputs" else None
        # Envelopes of this run whose source item still waits for another path's envelope.
        self._partial: dict[int, tuple[int, list[Any]]] = {}

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
                spec = SourceSpec(None, _envelopes, (spec, frozenset(self.done)), name=spec.name)
            copy = Node(node.id, node.name, op, spec, list(node.parents))
            copy.children = list(node.children)
            nodes.append(copy)
        return Graph(nodes, list(self.graph.outputs))

    def take(self, envelopes: list[Any]) -> list[tuple[int, list[Any]]]:
        """Envelopes that reached the output: journal the source items now done (committed
        before this returns) and return them, (index, outputs), in arrival order."""
        complete: list[tuple[int, list[Any]]] = []
        for index, outputs in envelopes:
            if self.paths == 1:
                complete.append((index, outputs))
                continue
            seen, held = self._partial.get(index, (0, []))
            held = held + outputs
            if seen + 1 == self.paths:
                del self._partial[index]
                complete.append((index, held))
            else:
                self._partial[index] = (seen + 1, held)
        if complete:
            self._commit(complete)
        return complete

    def _commit(self, complete: list[tuple[int, list[Any]]]) -> None:
        empty: list[Any] = []
        rows = complete if self.mode == "outputs" else [(i, empty) for i, _ in complete]
        try:
            blob = pickle.dumps(rows, protocol=5)
        except Exception as exc:
            stage = self.graph.nodes[self.graph.outputs[0]].name
            index = rows[0][0]
            msg = f"an output could not be pickled into the journal: {type(exc).__name__}: {exc}"
            raise StageError(stage, f"<outputs of source item {index}>", msg) from exc
        self.db.execute("INSERT INTO chunks (items) VALUES (?)", (blob,))

    def finish(self) -> None:
        """The source is done and every item's outputs journaled."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', '1')")
        self.finished = True

    def close(self) -> None:
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


def _envelopes(spec: SourceSpec, done: frozenset[int]) -> Iterator[tuple[int, list[object]]]:
    """The source's items as envelopes, without those done already (read, not run)."""
    for index, item in enumerate(spec.open()):
        if index not in done:
            yield index, [item]


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


def journaled_outputs(
    journal: Journal, events: Iterable[tuple[int, list[Any]]]
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``events`` (the envelopes of ``journal.graph_to_run()``), journal them, and yield
    (source index, outputs) per source item done: the earlier runs' first, then this one's."""
    yield from journal.recorded
    for _, envelopes in events:
        yield from journal.take(envelopes)
    journal.finish()
