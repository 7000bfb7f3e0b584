"""A worker's process (or thread): its entry point, how it settles in, watches its parent and
reports errors; and the stage, pickled for it."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from ..._errors import PipelineError, StageError
from ..._planner import FusedOp, FusedProcessor
from ..._transport import Decoder, cleanup

if TYPE_CHECKING:
    from ..._graph import Node
    from ..._ops import Op, Processor
    from .pipe import PipeEnd


from .wire import Control, Credits, Stopped, Undecodable, Where, Writer, unreadable
from .worker import Worker

WATCH_EVERY: Final = 0.5  # how often a worker checks that its parent still lives


def _forward_logs(control: Control, stage: str, process: str, level: int) -> None:
    """Send this worker process's log records to the caller, at the caller's level, named
    after the worker process (``process``), whether or not it has loaded multiprocessing."""
    import logging

    class LogForwarder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                record.stage = stage
                record.processName = process
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


def caller_log_level() -> int | None:
    """The level workers log at: the caller's, if it uses logging at all.

    A caller that never imported logging has no handlers to forward to: its
    workers then log as it would, to stderr, and nobody pays for the import.
    """
    logging = sys.modules.get("logging")
    return None if logging is None else int(logging.getLogger().getEffectiveLevel())


def worker_main(
    op_arg: Op | bytes,
    name: str,
    worker: int,
    count: int,
    reads: list[list[PipeEnd]],
    writes: dict[int, list[PipeEnd]],
    ranks: dict[int, int] | None,
    control_conn: PipeEnd,
    check_types: bool,
    keyed: bool,
    stop: threading.Event | None,
    node_id: int,
    mode: str,
    prefix: str,
    log_level: int | None,
    ledger: Credits | None,
    credit_in: list[list[int | None]],
    upstream: str,
    where: Where | None = None,
    where_slot: int = 0,
) -> None:
    """Entry point of one worker process (or thread): run one node's processor to the end."""
    parent = os.getppid()
    control = Control(control_conn)
    if stop is None:  # a process: Ctrl-C is the caller's to handle, it tears the run down
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _settle_in_process()
        _watch_parent(prefix)
        if log_level is not None:
            _forward_logs(control, name, f"olympipe:{name}:{worker}", log_level)
    proc: Processor | FusedProcessor | None = None
    writer = Writer(writes, ranks, prefix, ledger, (node_id, worker), stop)
    decoder = Decoder()
    try:
        # The shared counters, mapped before saying so: the caller then removes their files,
        # which no process needs any more, and a caller killed later leaves none behind.
        if ledger is not None:  # with the FIFOs of its producers, and its own
            slots = (slot for row in credit_in for slot in row if slot is not None)
            ledger.attach(stop, slots, (node_id, worker))
        if where is not None:
            where.attach(stop)
        control.send(("started",))
        op: Op = pickle.loads(op_arg) if isinstance(op_arg, bytes) else op_arg
        proc = op.open(
            name,
            check_types=check_types,
            processes=stop is None,
            shipped=op_arg if isinstance(op_arg, bytes) else None,
            workers=count,
        )
        worker_ = Worker(proc, worker, count, reads, writer, decoder, keyed, control, stop, node_id)
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
    except Undecodable as exc:
        item = f"<an item from {upstream} that could not be unpickled>"
        _report(control, name, unreadable(name, item, exc))
        if proc is not None:
            with contextlib.suppress(BaseException):
                proc.close()
    except (Stopped, EOFError, BrokenPipeError, ConnectionResetError):
        # Torn down, or a neighbour died: the caller reports what happened. Or the caller
        # itself died: its pipes close a moment before the kernel gives us a new parent.
        if stop is None:
            deadline = time.monotonic() + WATCH_EVERY
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
    - What the worker has at its start (a forked caller's whole heap: its modules, its data)
      is moved out of reach of the cyclic garbage collector (``gc.freeze``). A collection
      of the oldest generation would otherwise visit every object the caller made, writing
      to each one's header: the kernel then copies every page that holds one, in every
      worker, and the worker pays for the visit. The worker's own objects are collected as
      usual; what it inherited is shared with the caller, and stays so.
    """
    gc.freeze()
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None:
        futures_thread._threads_queues.clear()
    process = sys.modules.get("multiprocessing.process")  # a fork worker may run without it
    if process is not None:
        me: Any = process.current_process()
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
            time.sleep(WATCH_EVERY)
            if os.getppid() != parent or not alive(caller):
                with contextlib.suppress(OSError):
                    cleanup(prefix)
                os._exit(1)

    threading.Thread(target=watch, name="olympipe-watchdog", daemon=True).start()


def _report(control: Control, name: str, exc: BaseException) -> None:
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


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (neither gone nor a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs: by /proc where there is one (a zombie counts as gone),
    else by whether a signal could reach it."""
    if os.path.isdir("/proc/self"):
        return running(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def ship(op: Op | FusedOp, node: Node, *, imported: bool) -> bytes:
    """``op`` pickled for its workers: by the standard pickle when it can (fast, no import),
    else by cloudpickle (lambdas, closures, ``__main__``). Checked under every start method,
    so a stage that would fail under spawn fails under fork too.

    ``imported``: the workers import the script anew (spawn, forkserver), which ``ship.dumps``
    is for (issue 22). Under fork the bytes only prove that the stage pickles: a reference to
    ``__main__`` is as good there.
    """
    if not imported:
        with contextlib.suppress(Exception):
            return pickle.dumps(op, protocol=5)
    from ..._ship import dumps

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
