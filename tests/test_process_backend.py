"""The process backend under every start method: order, lifecycle, early exit."""

from __future__ import annotations

import gc
import inspect
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import psutil
import pytest
from filelog import lines, record
from malloc_child import SIZE, glibc_with_mallinfo2

from olympipe_typed import Pipeline, Stage, batch, run_all, source, stage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.timeout(120)

StartMethod = Literal["fork", "forkserver", "spawn"]
START_METHODS: list[StartMethod] = ["fork", "forkserver", "spawn"]


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> StartMethod:
    """Each multiprocessing start method in turn."""
    name: StartMethod = request.param
    return name


@stage
def double(x: int) -> int:
    """Twice the item."""
    return x * 2


def test_process_runs_closures_under_every_start_method(start_method: StartMethod) -> None:
    """A closure, a lambda and a batch give the inline result under fork, forkserver and spawn."""
    offset = 3

    def shift(x: int) -> int:
        return x + offset

    p = source(range(50)) >> stage(shift).options(workers=2) >> double >> batch(7)
    assert p.run(start_method=start_method) == p.run(backend="inline")


def test_process_keeps_order_with_random_delays(start_method: StartMethod) -> None:
    """workers=4 with random per-item delays still gives items in input order."""

    def jitter(x: int) -> int:
        time.sleep(random.random() / 500)
        return x

    p = source(range(300)) >> stage(jitter).options(workers=4)
    assert p.run(start_method=start_method) == list(range(300))


class Recorder:
    """A class stage that writes one line per construction and per close()."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        (self.folder / f"init-{os.getpid()}").touch()

    def __call__(self, x: int) -> int:
        return x + 1

    def close(self) -> None:
        (self.folder / f"close-{os.getpid()}").touch()


def test_class_stage_built_once_per_worker_inside_it(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """Each of 3 workers builds the instance once, in its own process, and closes it once."""
    rec: Stage[int, int] = stage(Recorder)(str(tmp_path)).options(workers=3)
    assert (source(range(30)) >> rec).run(start_method=start_method) == list(range(1, 31))
    inits = sorted(p.name for p in tmp_path.glob("init-*"))
    closes = sorted(p.name for p in tmp_path.glob("close-*"))
    assert len(inits) == 3
    assert [n.replace("init", "close") for n in inits] == closes
    assert f"init-{os.getpid()}" not in inits


def test_stream_break_on_infinite_source_stops_promptly() -> None:
    """Leaving stream() early on an endless generator returns at once and leaves no process."""
    started = time.monotonic()
    seen: list[int] = []
    for x in source(itertools.count()) >> double:
        seen.append(x)
        if len(seen) == 5:
            break
    assert seen == [0, 2, 4, 6, 8]
    assert time.monotonic() - started < 10


def test_limit_stops_an_infinite_source() -> None:
    """limit(n) after an endless source ends the run."""
    assert Pipeline(itertools.count()).task(lambda x: x + 1).limit(4).run() == [1, 2, 3, 4]


def test_run_all_broadcasts_shared_node_across_processes(tmp_path: Path) -> None:
    """A node shared by two outputs runs once per item, and both outputs see every item."""

    def mark(x: int) -> int:
        (tmp_path / f"{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return x

    shared = source(range(20)) >> stage(mark)
    evens, tens = run_all(shared >> double, shared.task(lambda x: x * 10))
    assert evens == [2 * i for i in range(20)]
    assert tens == [10 * i for i in range(20)]
    assert len(list(tmp_path.iterdir())) == 20


def test_backpressure_keeps_callers_memory_flat() -> None:
    """A 3M-item generator through a slow stage, read partially: the source is read only a
    little ahead and the caller's memory stays flat."""
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for i in range(3_000_000):
            pulled = i + 1
            yield i

    def slow(x: int) -> int:
        time.sleep(0.0005)
        return x

    me = psutil.Process()
    stream = (source(numbers()) >> stage(slow) >> double).stream()
    got: list[int] = []
    rss_at: dict[int, int] = {}
    for x in stream:
        got.append(x)
        if len(got) in (500, 2000):
            rss_at[len(got)] = me.memory_info().rss
            if len(got) == 2000:
                break
    assert got == [2 * i for i in range(2000)]
    # Bounded read-ahead: the feeder's window plus what the pipes hold, not the 3M items.
    assert pulled < 2000 + 50_000
    assert rss_at[2000] - rss_at[500] < 20 * 2**20


SCRIPT_WITHOUT_GUARD = """
from olympipe_typed import source, stage

def inc(x: int) -> int:
    return x + 1

print((source(range(3)) >> stage(inc)).run(start_method={method!r}))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_script_without_main_guard_fails_at_once_naming_it(tmp_path: Path, method: str) -> None:
    """A script running a pipeline at import, under spawn or forkserver, fails fast, naming the guard."""
    script = tmp_path / "no_guard.py"
    script.write_text(SCRIPT_WITHOUT_GUARD.format(method=method))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "if __name__ == '__main__':" in done.stderr
    assert time.monotonic() - started < 30


@pytest.mark.skipif(not glibc_with_mallinfo2(), reason="the tuning and its probe are glibc's")
def test_worker_processes_keep_freed_blocks_for_the_next_item(start_method: StartMethod) -> None:
    """In a worker process that has worked a while, a 24 MB block comes from the heap and stays
    there once freed, so the next item's arrays land on pages already faulted in; the caller's
    malloc is untouched.
    The caller is a fresh interpreter, whose glibc has never seen such a block freed (else it
    would slide its own threshold up): there, the same block is mapped apart and given back."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "malloc_child.py"), start_method],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = {
        line.split()[0]: [int(x) for x in line.split()[1:]] for line in done.stdout.splitlines()
    }
    worker_mapped, worker_kept = figures["worker"]
    assert worker_mapped == 0, f"the worker mapped {worker_mapped} bytes apart"
    assert worker_kept >= SIZE, f"the worker kept {worker_kept} bytes of free heap"
    caller_mapped, caller_kept = figures["caller"]
    assert caller_mapped >= SIZE, "the caller's malloc settings changed"
    assert caller_kept < SIZE


def _private_dirty_kb() -> int:
    """This process's pages written since it started, its own or copied on write (kB)."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    msg = "no Private_Dirty line in /proc/self/smaps_rollup"
    raise AssertionError(msg)


def _dirtied_by_a_collection(_: int) -> int:
    before = _private_dirty_kb()
    gc.collect()
    return _private_dirty_kb() - before


HELD = 300_000  # lists the caller holds: about 20 MB of objects the collector could visit


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="Linux's smaps only")
def test_a_forked_worker_collecting_garbage_leaves_the_callers_objects_shared() -> None:
    """A full collection in a forked worker does not visit the caller's objects: the pages that
    hold them stay shared, where a visit would write each object's header and have the kernel
    copy every one of those pages into the worker."""
    held = [[i] for i in range(HELD)]
    dirtied = (source([0]) >> stage(_dirtied_by_a_collection)).run(start_method="fork")
    assert len(held) == HELD  # alive until the run is over
    # Visiting every list would copy ~20 MB of pages; the worker's own collection, far less.
    assert dirtied[0] < 4_000, f"a collection in the worker copied {dirtied[0]} kB of pages"


def test_unknown_backend_is_refused() -> None:
    """A misspelled backend is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="backend must be one of"):
        source([1]).run(backend=cast("Literal['inline']", "inlined"))


class Hoarder:
    """Keeps every array it sees and checks them all at the end: a kept input must never change
    under the stage (its shared memory is not reused while the stage holds it)."""

    def __init__(self) -> None:
        self.kept: list[np.ndarray[Any, np.dtype[np.float64]]] = []

    def __call__(self, a: np.ndarray[Any, np.dtype[np.float64]]) -> float:
        self.kept.append(a)
        for i, old in enumerate(self.kept):
            assert float(old[0]) == float(old[-1]) == float(i), f"array {i} was overwritten"
        return float(a[0])


def same_array(a: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return a


def test_a_stage_may_keep_its_input_arrays() -> None:
    arrays = (np.full(300_000, float(i)) for i in range(30))
    out = (source(arrays) >> stage(same_array) >> stage(Hoarder)()).run()
    assert out == [float(i) for i in range(30)]


def pid_if_slow(x: int) -> tuple[int, int]:
    if x % 4 == 0:
        time.sleep(0.2)
    return x, os.getpid()


def test_unordered_stages_give_work_to_idle_workers() -> None:
    """Every 4th item is slow and there are 4 workers: dealing items in turn would give them
    all to one worker; with ordered=False each worker holds at most two messages, so they
    spread."""
    out = (source(range(16)) >> stage(pid_if_slow).options(workers=4, ordered=False)).run()
    assert sorted(x for x, _ in out) == list(range(16))
    assert len({pid for x, pid in out if x % 4 == 0}) >= 2


def slow_first(item: tuple[int, bytes]) -> tuple[int, float, int]:
    """(number, when done, pid): item 0 takes a second, the others 5 ms."""
    time.sleep(1.0 if item[0] == 0 else 0.005)
    return item[0], time.monotonic(), os.getpid()


def test_a_large_item_queued_behind_a_slow_one_holds_back_no_other_worker(
    start_method: StartMethod,
) -> None:
    """Items of 100 kB (files read whole), two workers, item 0 a second long: the other
    worker does the next items meanwhile. A message queued for the busy worker goes through
    shared memory, so the feeder never waits in a write that only the busy worker can end
    (with the 100 kB in the 64 kB pipe, the feeder waited that second, and so did the rest)."""
    items = [(i, os.urandom(100_000)) for i in range(40)]
    out = (source(items) >> stage(slow_first).options(workers=2)).run(start_method=start_method)
    assert [x for x, _, _ in out] == list(range(40))
    slow_done, slow_pid = out[0][1], out[0][2]
    meanwhile = [x for x, done, pid in out[1:] if pid != slow_pid and done < slow_done]
    assert len(meanwhile) >= 30, f"only {len(meanwhile)} items done during the slow one"


def sleep_30ms(x: int) -> int:
    time.sleep(0.03)
    return x


class NapClock:
    """``time`` for wire.py, telling ``nap`` of each ``sleep``: its seconds, and the name of
    the function that slept (``send`` waits for room; ``_attach``, for the caller's counters)."""

    def __init__(self, nap: Callable[[float, str], None]) -> None:
        self.nap = nap
        self.real_sleep = time.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        frame = inspect.currentframe()
        sleeper = frame.f_back if frame is not None else None
        self.nap(seconds, "" if sleeper is None else sleeper.f_code.co_name)
        self.real_sleep(seconds)


def test_a_feeder_sleeps_until_a_worker_has_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items of 30 ms each: the feeder, which waits for room at nearly every message, sleeps
    until a worker says it is done with one, rather than looking again and again (about ten
    looks a message when it polled)."""
    from olympipe_typed.backends.process import wire

    naps: list[float] = []
    monkeypatch.setattr(wire, "time", NapClock(lambda seconds, _: naps.append(seconds)))
    p = source(range(40)) >> stage(sleep_30ms).options(workers=2)
    assert p.run(start_method="fork") == list(range(40))
    assert len(naps) < 10, f"the feeder slept {len(naps)} times for 40 items"


def test_a_worker_that_feeds_others_sleeps_until_one_has_room(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker feeding a stage of 30 ms items waits for room at nearly every message: it
    sleeps until a worker of that stage says it has done one, as a feeder does, rather than
    looking again and again. Naps waiting for room are counted in every process (the workers
    are forked with the counting clock); not a worker's naps at its start, waiting for the
    caller's shared counters, which a loaded host makes longer."""
    from olympipe_typed.backends.process import wire

    log = tmp_path / "naps"

    def nap(seconds: float, where: str) -> None:
        if where == "send":
            record(log, f"{os.getpid()} {seconds}")

    monkeypatch.setattr(wire, "time", NapClock(nap))
    p = source(range(40)) >> double.options(workers=1) >> stage(sleep_30ms).options(workers=2)
    assert p.run(start_method="fork") == [2 * x for x in range(40)]
    assert len(lines(log)) < 10, f"producers slept {len(lines(log))} times for 40 items"


def wake_fifos(x: int) -> tuple[int, list[str]]:
    """The item, and the feeders' wake-up FIFOs this worker holds open."""
    names: list[str] = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if ".wake" in target:
            names.append(target.rsplit(".wake", 1)[1].split()[0])
    return x, sorted(names)


def test_a_worker_holds_open_only_the_fifos_of_the_feeders_that_feed_it() -> None:
    """Two sources, each feeding a stage of two workers: each worker writes to its own
    feeder's FIFO when it is done with a message, and holds no other one open."""
    fifos = stage(wake_fifos).options(workers=2)
    first = source(range(6)) >> fifos
    second = source(range(6, 12)) >> fifos
    out1, out2 = run_all(first, second, start_method="fork")
    assert [x for x, _ in out1] == list(range(6))
    assert [x for x, _ in out2] == list(range(6, 12))
    held1 = {tuple(names) for _, names in out1}
    held2 = {tuple(names) for _, names in out2}
    assert len(held1) == len(held2) == 1, (held1, held2)
    (mine1,), (mine2,) = held1, held2
    assert len(mine1) == len(mine2) == 1, (mine1, mine2)
    assert mine1 != mine2


class Stamp:
    """Logs (stage, item, time) as each item starts; sleeps ``delay`` per item."""

    def __init__(self, log: Path, stage_name: str, delay: float) -> None:
        self.log, self.stage_name, self.delay = log, stage_name, delay

    def __call__(self, x: int) -> int:
        record(self.log, f"{self.stage_name} {x} {time.monotonic()}")
        time.sleep(self.delay)
        return x


@pytest.mark.parametrize("bound", [3, None])
def test_queue_size_bounds_the_items_waiting_for_a_stage(tmp_path: Path, bound: int | None) -> None:
    """With queue_size=3, the fast stage before a slow one runs at most a few items ahead of
    it (3 queued, plus the one in its hands); without it, the pipe lets it race ahead."""
    log = tmp_path / "log"
    fast = stage(Stamp)(log, "fast", 0.0)
    slow = stage(Stamp)(log, "slow", 0.05).options(queue_size=bound)
    assert (source(range(30)) >> fast >> slow).run() == list(range(30))
    started: dict[tuple[str, int], float] = {}
    for line in lines(log):
        name, x, t = line.split()
        started[name, int(x)] = float(t)
    ahead = [
        j
        for j in range(6, 30)
        if started["fast", j] < started["slow", j - 6]  # fast began j before slow began j-6
    ]
    if bound is None:
        assert ahead  # the check below can fail: unbounded, the fast stage runs ahead
    else:
        assert ahead == []


class _SlowDataset:
    """A sized source (``len`` works) whose items are slow to load, like a dataset's."""

    def __init__(self, n: int, produced: dict[int, float]) -> None:
        self.n, self.produced = n, produced

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            time.sleep(0.03)
            self.produced[i] = time.monotonic()
            yield i


@pytest.mark.parametrize("backend", ["process", "thread"])
@pytest.mark.parametrize("sized", [False, True])
def test_slow_source_items_are_not_held_back(
    backend: Literal["process", "thread"], sized: bool
) -> None:
    """A source yielding an item every 30 ms (a generator, or a sized dataset): each output
    arrives well before the next item (a message is never held back waiting to fill)."""
    produced: dict[int, float] = {}

    def slow() -> Iterator[int]:
        for i in range(40):
            time.sleep(0.03)
            produced[i] = time.monotonic()
            yield i

    data = _SlowDataset(40, produced) if sized else slow()
    delays: list[float] = []
    for x in (source(data) >> double).stream(backend=backend):
        delays.append(time.monotonic() - produced[x // 2])
    assert len(delays) == 40
    # Generous for a loaded machine: a message held until it fills (cheap stages let messages
    # grow to 16 items and more here) keeps most items back for 0.2 s and longer.
    assert sorted(delays)[len(delays) * 3 // 4] < 0.15, delays


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_burst_then_pause_sends_the_burst(backend: Literal["process", "thread"]) -> None:
    """A source that yields bursts of items and then waits until the caller has seen them all
    (a queue consumer between bursts) does not hang: a burst is sent while the source pauses."""
    seen = threading.Event()
    waited: list[bool] = []

    def bursts() -> Iterator[int]:
        for burst in range(4):
            yield from range(burst * 3000, (burst + 1) * 3000)
            waited.append(seen.wait(20))  # resumes once the burst came out
            seen.clear()

    out: list[int] = []
    for x in (source(bursts()) >> double).stream(backend=backend):
        out.append(x)
        if len(out) % 3000 == 0:
            seen.set()
    assert out == [2 * i for i in range(12000)]
    assert waited == [True] * 4
