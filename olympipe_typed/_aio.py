"""I/O-bound stages: ``async def`` functions, ``concurrency=`` and ``rate=`` (API.md §9).

A ``Processor`` whose stage waits rather than computes hands its items here. Each worker then
keeps up to ``concurrency`` items of a message in flight at once: coroutines on an event loop of
its own (one thread, started on the first item), or threads for a plain function. Outputs keep
their items' order, so a message's outputs leave as one message, as with any other stage.

The event loop runs in its own thread, never in the worker's: the worker may itself be a
thread of a program that has a loop running (a notebook, an async web app), where a second
loop cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

    from ._ops import AsyncKind

R = TypeVar("R")


def run_sync(awaitable: Awaitable[Any]) -> Any:
    """Run a coroutine to its end from synchronous code, in a thread that may have a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    # This thread runs a loop (an async test, a notebook): a second one runs elsewhere.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _await(awaitable)).result()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    """An async generator's outputs, as a list (a flat stage's outputs for one item)."""
    return [x async for x in items]


class Limiter:
    """At most ``per_second`` starts a second: each start waits for its turn, one
    ``1 / per_second`` after the last (no bursts after an idle time). Thread-safe."""

    __slots__ = ("_interval", "_lock", "_next")

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = -float("inf")
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take the next turn; how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
            return start - now

    def wait(self) -> None:
        delay = self.delay()
        if delay > 0:
            time.sleep(delay)

    async def wait_async(self) -> None:
        delay = self.delay()
        if delay > 0:
            await asyncio.sleep(delay)


class Runner:
    """Where one worker's items wait: an event loop in a thread of its own (async functions),
    or a pool of ``concurrency`` threads (plain ones). Made by the Processor, closed with it."""

    __slots__ = ("_gate", "_kind", "_loop", "_pool", "_thread", "concurrency", "limiter")

    def __init__(self, kind: AsyncKind, concurrency: int, limiter: Limiter | None) -> None:
        self._kind = kind
        self.concurrency = concurrency
        self.limiter = limiter
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._gate: asyncio.Semaphore | None = None  # made on the loop, shared by every call

    @property
    def is_async(self) -> bool:
        return self._kind is not None

    def bind(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` as the sequential paths call it: one item at a time, at the rate's pace,
        awaited if it is async (an async generator's outputs as a list)."""

        def call(item: object) -> Any:
            if self.limiter is not None:
                self.limiter.wait()
            if self._kind is None:
                return fn(item)
            return self._submit(self.attempt(fn, item)).result()

        return call

    async def attempt(self, fn: Callable[[Any], Any], item: object) -> Any:
        """``fn(item)`` once, awaited (an async generator: its outputs, as a list)."""
        result = fn(item)
        if self._kind == "asyncgen":
            return await collect(result)
        return await result

    def map(
        self,
        one: Callable[[object], R],
        one_async: Callable[[object], Coroutine[Any, Any, R]],
        items: list[Any],
    ) -> list[R]:
        """Each item's outputs, in the items' order, ``concurrency`` items in flight."""
        return self.start(one, one_async, items)()

    def start(
        self,
        one: Callable[[object], R],
        one_async: Callable[[object], Coroutine[Any, Any, R]],
        items: list[Any],
    ) -> Callable[[], list[R]]:
        """Start ``items`` behind those started before (``concurrency`` in flight over all of
        them); the function returned waits for their outputs, in the items' order.

        ``one``/``one_async`` run one item with its retries, and return its failure rather
        than raise it. What they do raise (a type check, a stop) ends the call: the items
        not started are dropped, the others cancelled (coroutines) or awaited (threads).
        """
        if self._kind is not None:
            future: Future[list[R]] = self._submit(self._gather(one_async, items))
            return future.result
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="stage")
        limiter = self.limiter

        def begin(item: object) -> R:
            if limiter is not None:
                limiter.wait()
            return one(item)

        futures = [self._pool.submit(begin, item) for item in items]

        def results() -> list[R]:
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

        return results

    async def _gather(
        self, one_async: Callable[[object], Coroutine[Any, Any, R]], items: list[Any]
    ) -> list[R]:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.concurrency)
        gate, limiter = self._gate, self.limiter

        async def begin(item: object) -> R:
            async with gate:
                if limiter is not None:
                    await limiter.wait_async()
                return await one_async(item)

        tasks = [asyncio.ensure_future(begin(item)) for item in items]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="stage-loop", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        """Stop the loop's thread or the pool; items still in flight (started ahead of an
        error) are cancelled, those not started dropped."""
        loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join()
            loop.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


async def _cancel_all() -> None:
    """Cancel every other task of the running loop, and wait for them to end."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
