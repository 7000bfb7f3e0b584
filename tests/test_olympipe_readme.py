"""olympipe's README examples and the article's two examples, run on the process backend.

Each example is olympipe's own text with only the import line changed; where a change was
needed to run it at all (a value the README leaves undefined, a slow sleep shortened, type
annotations for the strict checkers), the test says so. Each test checks the exact result.
Where the README's stated output is wrong, the test checks the right one and says why.

The README is olympipe 2.2.0's (its package metadata); the article is the one that made
olympipe known ("How I decreased my 8-hours python image dataset generation process to a
mere 30-mins"). The last section checks, on the process backend, the differences that
docs/migrating.md promises to users coming from olympipe.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple  # noqa: UP035

import psutil
import pytest
from filelog import lines as _lines
from filelog import record as _record

from olympipe_typed import Pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(120)


# -- the README's introduction --


def heavy_compute(x: int) -> int:
    """Left undefined by the README: here, a cheap function with some results <= 0."""
    return x - 500


def test_readme_intro_example() -> None:
    """The README's first example: 8 workers, a filter, batches of 32, in input order."""
    results = (
        Pipeline(range(1000))
        .task(heavy_compute, count=8)  # 8 parallel workers
        .filter(lambda x: x > 0)
        .batch(32)
        .wait_for_result()
    )
    # 501..999 give 1..499: 15 batches of 32 and a last one of 19, every value in order.
    assert [len(b) for b in results] == [32] * 15 + [19]
    assert [x for b in results for x in b] == list(range(1, 500))


# -- Basic usage --


def test_readme_basic_usage() -> None:
    """Basic usage: map, filter, batch of 3.

    The README says the result is ``[[0, 8, 16], [24, 32, 40]]``, which is wrong: doubling
    0..19 and keeping the multiples of 4 gives 0, 4, 8, ..., 36, ten values, so four batches.
    olympipe 2.2.0 itself returns the result checked here.
    """
    results = (
        Pipeline(range(20))
        .task(lambda x: x * 2)  # transform
        .filter(lambda x: x % 4 == 0)  # keep even multiples of 4
        .batch(3)  # group into lists of 3
        .wait_for_result()
    )
    assert results == [[0, 4, 8], [12, 16, 20], [24, 28, 32], [36]]


# -- Parallel workers --


def slow_io(url: str) -> bytes:
    # simulate network call
    time.sleep(0.5)
    return b"data"


def test_readme_parallel_workers() -> None:
    """Parallel workers: 20 workers of a 0.5 s call run about 20 at a time.

    ``my_urls`` is left undefined by the README; 40 URLs here instead of its 200, so the
    test takes about a second (one worker would take 20 s).
    """
    my_urls = [f"https://example.com/{i}" for i in range(40)]
    started = time.monotonic()
    # 40 URLs processed with 20 concurrent workers
    results = Pipeline(my_urls).task(slow_io, count=20).wait_for_result()
    elapsed = time.monotonic() - started
    assert results == [b"data"] * 40
    # One call at a time would take 20 s, the ideal is 1 s; a loaded machine, or forkserver
    # and spawn starting 20 workers, fall between (how fast: make bench's question).
    assert elapsed < 10.0, f"{elapsed:.1f} s: fewer than 2 calls at a time (ideal: 1 s)"


def slow_io_by_url(url: str) -> bytes:
    """``slow_io`` with a result that names its URL, and every fifth URL much slower."""
    time.sleep(0.3 if url.endswith(("0", "5")) else 0.01)
    return url.encode()


def test_parallel_workers_keep_order() -> None:
    """With ``count=20``, results come in input order although later items finish first.

    olympipe 2.2.0's workers share one output queue: there, fast items overtake slow ones.
    """
    my_urls = [f"https://example.com/{i}" for i in range(40)]
    results = Pipeline(my_urls).task(slow_io_by_url, count=20).wait_for_result()
    assert results == [url.encode() for url in my_urls]


# -- Stateful workers --


class RunningStats:
    """The README's class, with the annotations the strict type checkers ask for."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0

    def update(self, x: float) -> dict[str, float]:
        self.n += 1
        self.total += x
        return {"n": self.n, "mean": self.total / self.n}


def _sensor() -> Iterator[float]:
    """A stand-in for the README's undefined ``sensor_stream``."""
    yield from (2.0, 4.0, 9.0, 1.0)


def test_readme_stateful_workers() -> None:
    """class_task builds the class once for its worker: the running count goes 1, 2, 3, 4."""
    sensor_stream = _sensor()
    results = (
        Pipeline(sensor_stream).class_task(RunningStats, RunningStats.update).wait_for_result()
    )
    assert results == [
        {"n": 1, "mean": 2.0},
        {"n": 2, "mean": 3.0},
        {"n": 3, "mean": 5.0},
        {"n": 4, "mean": 4.0},
    ]


# -- Split & gather --


def route(x: int) -> Tuple[Optional[int], Optional[int]]:  # noqa: UP006, UP045
    return (x, None) if x % 2 == 0 else (None, x)


def test_readme_split_and_gather() -> None:
    """Split into evens and odds, transform each branch, gather them back in source order.

    The README shows no result; olympipe 2.2.0 returns the same values in an order that
    changes from run to run.
    """
    evens, odds = Pipeline(range(20)).split(route, n=2)

    results = (
        evens.task(lambda x: x * 10)  # multiply evens
        .gather(odds.task(lambda x: -x))  # negate odds, then merge
        .wait_for_result()
    )
    assert results == [
        0,
        -1,
        20,
        -3,
        40,
        -5,
        60,
        -7,
        80,
        -9,
        100,
        -11,
        120,
        -13,
        140,
        -15,
        160,
        -17,
        180,
        -19,
    ]


# -- Step caching --


def expensive_step_1(x: int) -> int:
    time.sleep(0.2)  # simulate heavy computation (the README sleeps 1 s)
    return x**2


def expensive_step_2(x: int) -> int:
    time.sleep(0.2)  # (the README sleeps 1 s)
    return x + 1


def test_readme_step_caching_as_written() -> None:
    """The README's step caching example: two cached steps in a row, then one uncache().

    Six items instead of 100, and 0.2 s sleeps instead of 1 s. (The README's snippet also
    forgets ``import time``; olympipe runs it only with that import added.)
    """
    with tempfile.TemporaryDirectory() as cache_dir:
        # First run: computes everything, writes .pkl files
        results = (
            Pipeline(range(6))
            .cached_task(expensive_step_1, cache_dir=cache_dir)
            .cached_task(expensive_step_2, cache_dir=cache_dir)
            .uncache()
            .wait_for_result()
        )
        written = _entries(cache_dir)

        # Second run: instant — reads from disk, skips all computation
        results_again = (
            Pipeline(range(6))
            .cached_task(expensive_step_1, cache_dir=cache_dir)
            .cached_task(expensive_step_2, cache_dir=cache_dir)
            .uncache()
            .wait_for_result()
        )
        assert _entries(cache_dir) == written  # nothing computed, so nothing written again
    assert results == results_again == [1, 2, 5, 10, 17, 26]
    assert len(written) == 12  # six items, two steps


def _entries(cache_dir: str) -> dict[str, tuple[int, int]]:
    """Each cache entry's (inode, mtime): an entry computed again is written anew (a new file
    renamed over the old one), so these change. How much faster reading is: make bench's."""
    found: dict[str, tuple[int, int]] = {}
    for path in Path(cache_dir).rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            st = path.stat()
            found[str(path)] = (st.st_ino, st.st_mtime_ns)
    return found


def _cached_run(cache_dir: str) -> list[int]:
    """The README's cached pipeline with ``.uncache()`` after each cached step."""
    return (
        Pipeline(range(6))
        .cached_task(expensive_step_1, cache_dir=cache_dir)
        .uncache()
        .cached_task(expensive_step_2, cache_dir=cache_dir)
        .uncache()
        .wait_for_result()
    )


def test_readme_step_caching_second_run_computes_nothing(tmp_path: Path) -> None:
    """A second run over the same cache reads every result from disk: same results, and no
    entry computed (so written) again."""
    cache_dir = str(tmp_path / "cache")
    results = _cached_run(cache_dir)
    written = _entries(cache_dir)
    assert len(written) == 12  # six items, two steps
    assert _cached_run(cache_dir) == results == [1, 2, 5, 10, 17, 26]
    assert _entries(cache_dir) == written


# -- Temporal batching (streams) --


def slow_producer(x: int) -> int:
    time.sleep(0.05)
    return x


def test_readme_temporal_batching() -> None:
    """Items come every 50 ms for about 5 s; windows of 500 ms give about 10 sums.

    The window boundaries depend on timing, so the test checks what cannot vary: every
    item is counted once, and the number of windows is near 5 s / 0.5 s (a machine under
    load stretches the stream, so more windows are allowed than fewer).
    """
    results = (
        Pipeline(range(100))
        .task(slow_producer)
        .temporal_batch(0.5)  # collect items for 500ms, then emit as a list
        .task(lambda batch: sum(batch))
        .wait_for_result()
    )
    assert sum(results) == sum(range(100))
    assert 6 <= len(results) <= 40, results


def test_temporal_batching_windows_are_consecutive_runs() -> None:
    """The README's stream without the sum: each window is a run of consecutive items."""
    # One producer (count=1), as olympipe runs it: 40 items over 2 s, windows of 0.5 s. (Left
    # to the planner, the producer gets a worker per core, and as many times fewer windows.)
    p = Pipeline(range(40)).task(slow_producer, count=1).temporal_batch(0.5)
    batches = p.wait_for_result()
    assert [x for b in batches for x in b] == list(range(40))
    assert all(batches), batches
    assert 3 <= len(batches) <= 20, [len(b) for b in batches]
    assert max(len(b) for b in batches) <= 20, [len(b) for b in batches]


# -- the article's two examples --


def times_2(x: int) -> int:
    return x * 2


def test_article_simple_task(capsys: pytest.CaptureFixture[str]) -> None:
    """The article's first example prints the doubled list."""
    datas = list(range(10))
    # olympipe process
    p = Pipeline(datas)
    p1 = p.task(times_2)
    res = p1.wait_for_result()
    print(res)  # [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert capsys.readouterr().out == "[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]\n"


def test_article_chained_task(capsys: pytest.CaptureFixture[str]) -> None:
    """The article's chained form of the first example prints the same list."""
    datas = list(range(10))
    # olympipe process
    res = Pipeline(datas).task(times_2).wait_for_result()
    print(res)  # [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert capsys.readouterr().out == "[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]\n"


CLIENTS = [
    "jane@example.com",
    "not-an-email",
    "bob@example.org",
    "555-123-4567",
    "ann@example.net",
]


# The article reads the file without closing it; CPython warns when it collects the file.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_article_branching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The article's branching example, as written: three results from one pipeline.

    Its email pattern is written JavaScript-style, between slashes, so in Python it matches
    nothing: every record is an invalid email, and the two branches under ``email_valid``
    are empty. Every record reaches ``email_missing``: siblings each receive every item.
    (On olympipe 2.2.0 the example stops at ``Pipeline.wait_for_all_results``, which that
    version removed; with ``wait_for_results`` instead, its siblings compete for items.)
    """
    (tmp_path / "client_data.json").write_text(json.dumps(CLIENTS))
    monkeypatch.chdir(tmp_path)

    data: List[str] = json.loads(open("client_data.json", "r").read())  # noqa: SIM115, UP006, UP015
    phone_regex = re.compile(r"^[\+]?[(]?[0-9]{3}[)]?[-\s\.]?[0-9]{3}[-\s\.]?[0-9]{4,6}$")
    email_regex = re.compile(
        r"/^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*$/"
    )

    pipe = Pipeline(data)
    email_missing = pipe.filter(lambda x: not bool(email_regex.match(x)))
    email_valid = pipe.filter(lambda x: bool(email_regex.match(x)))
    phone_missing = email_valid.filter(lambda x: not bool(phone_regex.match(x)))
    all_info_ok = email_valid.filter(lambda x: bool(phone_regex.match(x)))

    res_invalid_email, res_invalid_phone, res_ok = Pipeline.wait_for_all_results(
        [
            email_missing,
            phone_missing,
            all_info_ok,
        ]
    )
    print(len(res_ok), "Valid client information")

    assert res_invalid_email == CLIENTS
    assert res_invalid_phone == []
    assert res_ok == []
    assert capsys.readouterr().out == "0 Valid client information\n"


def test_article_branching_with_a_python_email_pattern() -> None:
    """The same graph with the email pattern written for Python: both levels of siblings get every item.

    A record is one string, so it cannot be both an email and a phone number: emails land in
    ``phone_missing``, the rest in ``email_missing``, and ``all_info_ok`` stays empty.
    """
    data = CLIENTS
    phone_regex = re.compile(r"^[\+]?[(]?[0-9]{3}[)]?[-\s\.]?[0-9]{3}[-\s\.]?[0-9]{4,6}$")
    email_regex = re.compile(
        r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*$"
    )

    pipe = Pipeline(data)
    email_missing = pipe.filter(lambda x: not bool(email_regex.match(x)))
    email_valid = pipe.filter(lambda x: bool(email_regex.match(x)))
    phone_missing = email_valid.filter(lambda x: not bool(phone_regex.match(x)))
    all_info_ok = email_valid.filter(lambda x: bool(phone_regex.match(x)))
    phone_ok = pipe.filter(lambda x: bool(phone_regex.match(x)))

    assert Pipeline.wait_for_all_results([email_missing, phone_missing, all_info_ok, phone_ok]) == [
        ["not-an-email", "555-123-4567"],
        ["jane@example.com", "bob@example.org", "ann@example.net"],
        [],
        ["555-123-4567"],
    ]


# -- what docs/migrating.md promises, on the process backend --


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


def test_building_and_start_run_nothing_until_a_wait(tmp_path: Path) -> None:
    """Building a graph starts no process and start() runs nothing; wait_for_result() runs it."""
    log = tmp_path / "log"
    before = _children()

    def seen(x: int) -> int:
        _record(log, str(x))
        return x

    pipeline = Pipeline(range(3)).task(seen).task(times_2, count=3)
    assert pipeline.start() is pipeline
    time.sleep(0.5)
    assert _children() - before == set()
    assert _lines(log) == []
    assert pipeline.wait_for_result() == [0, 2, 4]
    assert sorted(_lines(log)) == ["0", "1", "2"]  # seen() may run on several workers


def test_a_pipeline_over_a_list_runs_again() -> None:
    """A second wait_for_result() runs the pipeline again (olympipe 2.2.0 returns [])."""
    pipeline = Pipeline([1, 2, 3]).task(times_2)
    assert pipeline.wait_for_result() == [2, 4, 6]
    assert pipeline.wait_for_result() == [2, 4, 6]


def _ticks(n: int, every: float) -> Iterator[int]:
    for i in range(n):
        time.sleep(every)
        yield i


def test_timeout_counts_from_the_last_item_not_from_building() -> None:
    """timeout(s) is an inactivity limit: a steady stream longer than s, run well after
    building, passes whole (olympipe 2.2.0 counts s from building: it returned [])."""
    pipeline = Pipeline(_ticks(8, 0.25)).timeout(1.0)
    time.sleep(1.5)
    assert pipeline.wait_for_result() == list(range(8))


def test_wait_for_completion_runs_other_pipes_too(tmp_path: Path) -> None:
    """wait_for_completion(other_pipes) runs this pipeline and the others' sinks, as one graph."""
    first = tmp_path / "first"
    second = tmp_path / "second"
    base = Pipeline(range(3))
    one = base.task(lambda x: _record(first, str(x)))
    other = base.task(lambda x: _record(second, str(x * 10)))
    one.wait_for_completion([other])
    assert _lines(first) == ["0", "1", "2"]
    assert _lines(second) == ["0", "10", "20"]


# -- library bugs found while checking the above --

_SELF_GATHER = """
from olympipe_typed import Pipeline

p = Pipeline([1, 2])
print(p.gather(p).wait_for_result())
"""


def test_gather_a_pipeline_with_itself() -> None:
    """``p.gather(p)`` gives every item twice, as the inline backend does, and returns.

    Run in a child process of its own session, so that a hang is stopped with all its workers.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _SELF_GATHER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("p.gather(p).wait_for_result() had not returned after 10 s")
    assert child.returncode == 0, err
    assert out == "[1, 1, 2, 2]\n"


class Scaler:
    """A small class for class_task."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def scale(self, x: int) -> int:
        return x * self.factor


def scale_plus_one(scaler: Scaler, x: int) -> int:
    """A plain function of (instance, item): what class_task's signature asks for."""
    return scaler.scale(x) + 1


def test_class_task_with_a_plain_function_as_method() -> None:
    """class_task calls a plain function with the worker's instance and the item."""
    pipeline = Pipeline([1, 2]).class_task(Scaler, scale_plus_one, [10])
    assert pipeline.wait_for_result() == [11, 21]


def test_class_task_with_a_plain_function_as_close_method(tmp_path: Path) -> None:
    """class_task calls close_method(instance) once per worker at the end, or says why it cannot."""
    log = tmp_path / "log"

    def closing(scaler: Scaler) -> None:
        _record(log, f"closed {scaler.factor}")

    pipeline = Pipeline([1, 2]).class_task(Scaler, Scaler.scale, [10], close_method=closing)
    assert pipeline.wait_for_result() == [10, 20]
    assert _lines(log) == ["closed 10"]
