"""Running a stage's function where it can be stopped: ``item_timeout`` and
``max_items_per_worker``.

A worker whose stage has either option does not call the function itself: it hands each
item to a *runner* and waits for the answer.

- ``ProcessRunner`` (process backend): the runner is a child process of the worker, forked
  from it, so it holds the stage's function (or builds the class stage's instance) without
  shipping anything. An item that runs past ``item_timeout`` gets the child SIGKILLed and
  fails with ``ItemTimeout``; the next item starts a fresh child. After
  ``max_items_per_worker`` items the child is closed (a class stage's ``close()`` runs in
  it) and the next item starts a fresh one. The child dies with its worker (Linux
  ``PR_SET_PDEATHSIG``, and a watch on its parent elsewhere), and a child that dies on an
  item fails that item with ``WorkerDied``.
- ``ThreadRunner`` (inline and thread backends, which cannot stop a thread): the function
  runs in a helper thread. An item past its time fails with ``ItemTimeout`` and the helper
  is abandoned (it ends once the call it is stuck in returns); the next item gets a new
  helper, with a new instance for a class stage.

Both look like the stage's function to the worker's ``Processor``, so retries, ``on_error``
and type checks apply to what they raise as to anything the function raises. Each item
costs one round trip to the runner (tens of microseconds with a child process): the options
are meant for items that take milliseconds or more.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any, Final

from ._errors import ItemTimeout, WorkerDied
from ._hints import short_repr

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

    from ._ops import Op

_CLOSE: Final = b"C"  # asks the child to run close() and exit: never a valid pickle
_CLOSE_GRACE: Final = 30.0  # seconds a child gets to run close() and exit


def runner(op: Op, name: str, *, processes: bool, shipped: bytes | None) -> Runner:
    """A runner for ``op``'s function: a child process of this worker, or a helper thread."""
    if processes and hasattr(os, "fork"):
        return ProcessRunner(op, name, shipped)
    return ThreadRunner(op, name)


class Runner:
    """Calls the stage's function on one item, within ``item_timeout``."""

    def __init__(self, op: Op, name: str) -> None:
        self.op = op
        self.name = name
        self.timeout: float | None = op.options.item_timeout
        self.max_items: int | None = op.options.max_items_per_worker
        self.count = 0  # items given to the current child or helper

    def __call__(self, item: object) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _timed_out(self, item: object) -> ItemTimeout:
        assert self.timeout is not None
        return ItemTimeout(self.name, short_repr(item), self.timeout)


def _build(op: Op) -> tuple[Callable[[Any], Any], Callable[[], object] | None]:
    from ._ops import ClassSpec

    fn = op.fn
    if isinstance(fn, ClassSpec):
        return fn.build()
    assert fn is not None
    return fn, None


def _call(fn: Callable[[Any], Any], kind: str, item: object) -> object:
    """What the worker's Processor would get back from calling the function itself (a flat
    stage's outputs as a list: a generator cannot cross a process boundary)."""
    result = fn(item)
    if kind == "flat":
        return list(result)
    if kind == "filter":
        return bool(result)
    return result


# --- a child process per worker ---


class ProcessRunner(Runner):
    def __init__(self, op: Op, name: str, shipped: bytes | None) -> None:
        super().__init__(op, name)
        self.shipped = shipped
        self.child: Any = None
        self.conn: Connection | None = None

    def __call__(self, item: object) -> Any:
        if self.child is not None and self.max_items is not None and self.count >= self.max_items:
            self._retire()
        if self.child is None:
            self._start()
        conn, child = self.conn, self.child
        assert conn is not None
        assert child is not None
        self.count += 1
        conn.send_bytes(pickle.dumps(item, protocol=5))  # raises for an unpicklable item
        if not conn.poll(self.timeout):
            self._kill()
            raise self._timed_out(item)
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            child.join(timeout=1.0)
            code = child.exitcode
            pid = child.pid
            self._kill()
            raise WorkerDied(self.name, pid, code, "its runner died on this item") from None
        kind, payload = pickle.loads(data)
        if kind == "ok":
            return payload
        raise _rebuild(payload)

    def _start(self) -> None:
        import multiprocessing

        ctx: Any = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe(duplex=True)
        op_arg: Op | bytes = self.shipped if self.shipped is not None else self.op
        child = ctx.Process(
            target=_child_main,
            args=(op_arg, theirs, os.getpid()),
            name=f"olympipe:{self.name}:runner",
            daemon=True,
        )
        with warnings.catch_warnings():
            # 3.12+ warns of forking a process with threads: a worker's own (its watch on
            # its parent, log forwarding) hold nothing the child needs.
            warnings.simplefilter("ignore", DeprecationWarning)
            child.start()
        theirs.close()
        self.child, self.conn, self.count = child, ours, 0

    def _kill(self) -> None:
        """Stop the child now (it is stuck, or dead): SIGKILL, no close()."""
        child, conn = self.child, self.conn
        self.child = self.conn = None
        if conn is not None:
            conn.close()
        if child is not None:
            with contextlib.suppress(OSError, ValueError):
                child.kill()
            child.join(timeout=5.0)
            with contextlib.suppress(ValueError):
                child.close()

    def _retire(self) -> None:
        """Close the child after its quota of items: its close() runs, its errors are ours."""
        child, conn = self.child, self.conn
        assert child is not None
        assert conn is not None
        payload: Any = None
        try:
            conn.send_bytes(_CLOSE)
            if conn.poll(_CLOSE_GRACE):
                kind, payload = pickle.loads(conn.recv_bytes())
                if kind == "ok":
                    payload = None
        except (EOFError, OSError):
            payload = None
        finally:
            child.join(timeout=_CLOSE_GRACE)
            self._kill()
        if payload is not None:
            raise _rebuild(payload)

    def close(self) -> None:
        if self.child is not None:
            self._retire()


def _child_main(op_arg: Op | bytes, conn: Connection, parent: int) -> None:
    """The runner child: call the function on each item received, until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    op: Op = pickle.loads(op_arg) if isinstance(op_arg, bytes) else op_arg
    fn: Callable[[Any], Any] | None = None
    closer: Callable[[], object] | None = None
    kind = op.kind
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):  # the worker is gone
            return
        if data == _CLOSE:
            break
        try:
            if fn is None:
                fn, closer = _build(op)
            reply = pickle.dumps(("ok", _call(fn, kind, pickle.loads(data))), protocol=5)
        except Exception as exc:
            reply = pickle.dumps(("err", _error(exc)), protocol=5)
        conn.send_bytes(reply)
    try:
        if closer is not None:
            closer()
        reply = pickle.dumps(("ok", None))
    except Exception as exc:
        reply = pickle.dumps(("err", _error(exc)), protocol=5)
    with contextlib.suppress(OSError):
        conn.send_bytes(reply)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when the worker that forked it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    else:  # pragma: no cover - a watch thread where the kernel does not offer it

        def watch() -> None:
            while os.getppid() == parent:
                threading.Event().wait(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def _error(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """What the worker needs of an exception: itself if it round-trips, else its text."""
    import traceback

    from ._failures import qualified_name

    name = qualified_name(type(exc))
    text = "".join(traceback.format_exception(exc))
    blob: bytes | None
    try:
        blob = pickle.dumps(exc, protocol=5)
        pickle.loads(blob)
    except Exception:
        blob = None
    return blob, name, str(exc), text


class RemoteError(Exception):
    """An exception from a runner child that could not be rebuilt in the worker."""


def _rebuild(payload: tuple[bytes | None, str, str, str]) -> BaseException:
    blob, name, message, text = payload
    exc: BaseException
    try:
        exc = pickle.loads(blob) if blob is not None else RemoteError(f"{name}: {message}")
    except Exception:
        exc = RemoteError(f"{name}: {message}")
    # Failure records and StageError messages show the child's traceback, not ours.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, "olympipe_remote", (name, text))  # noqa: B010 - any exception type
        exc.add_note("In the stage's runner process:\n" + text.rstrip("\n"))
    return exc


# --- a helper thread (inline and thread backends) ---


class _Helper:
    """One helper thread; abandoned, not stopped, when an item outlives its time."""

    def __init__(self, op: Op, name: str) -> None:
        self.inbox: queue.SimpleQueue[tuple[object] | None] = queue.SimpleQueue()
        self.outbox: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self.op = op
        self.thread = threading.Thread(target=self._main, name=f"olympipe:{name}:runner")
        self.thread.daemon = True
        self.thread.start()

    def _main(self) -> None:
        fn: Callable[[Any], Any] | None = None
        closer: Callable[[], object] | None = None
        while True:
            task = self.inbox.get()
            if task is None:
                break
            try:
                if fn is None:
                    fn, closer = _build(self.op)
                self.outbox.put((True, _call(fn, self.op.kind, task[0])))
            except BaseException as exc:
                self.outbox.put((False, exc))
        try:
            if closer is not None:
                closer()
            self.outbox.put((True, None))
        except BaseException as exc:
            self.outbox.put((False, exc))


class ThreadRunner(Runner):
    def __init__(self, op: Op, name: str) -> None:
        super().__init__(op, name)
        self.helper: _Helper | None = None

    def __call__(self, item: object) -> Any:
        if self.helper is not None and self.max_items is not None and self.count >= self.max_items:
            self._retire()
        if self.helper is None:
            self.helper, self.count = _Helper(self.op, self.name), 0
        helper = self.helper
        self.count += 1
        helper.inbox.put((item,))
        try:
            ok, value = helper.outbox.get(timeout=self.timeout)
        except queue.Empty:
            helper.inbox.put(None)  # it leaves once its call returns, if ever
            self.helper = None
            raise self._timed_out(item) from None
        if ok:
            return value
        raise value

    def _retire(self) -> None:
        helper, self.helper = self.helper, None
        assert helper is not None
        helper.inbox.put(None)
        ok, value = helper.outbox.get()
        helper.thread.join()
        if not ok:
            raise value

    def close(self) -> None:
        if self.helper is not None:
            self._retire()
