"""Long runs (API.md §8): failures collected, budgets, item time limits, worker recycling,
and journals that resume after a crash, a SIGKILL or Ctrl-C."""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from olympipe_typed import (
    Failure,
    FailureBudgetExceeded,
    ItemTimeout,
    JournalMismatch,
    StageError,
    flat_stage,
    load_failures,
    source,
    stage,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(240)

HERE = Path(__file__).resolve().parent


# --- on_error="collect", failures=, load_failures ---


@stage(on_error="collect")
def parse(x: int) -> int:
    """Fails on 3 items in 10: x % 10 in (3, 6, 9)."""
    if x % 10 in (3, 6, 9):
        msg = f"cannot parse {x}"
        raise ValueError(msg)
    return x * 2


@stage
def parse_fixed(x: int) -> int:
    return x * 2


@stage
def plus_one(x: int) -> int:
    return x + 1


def test_collect_records_each_failure_and_goes_on(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    p = source(range(200)) >> parse >> plus_one
    out = p.run(backend=backend, failures=path)
    assert out == [x * 2 + 1 for x in range(200) if x % 10 not in (3, 6, 9)]
    report = p.last_report
    assert report is not None
    failed = sorted(f.item for f in report.failures)
    assert failed == [x for x in range(200) if x % 10 in (3, 6, 9)]
    first = min(report.failures, key=lambda f: f.item)
    assert (first.stage, first.item, first.error_type, first.message, first.attempts) == (
        "parse",
        3,
        "ValueError",
        "cannot parse 3",
        1,
    )
    assert "raise ValueError(msg)" in first.traceback  # the worker's traceback, with its source
    assert "failures collected: 60 (parse 60)" in str(report)
    assert sorted(load_failures(path), key=lambda f: f.item) == sorted(
        report.failures, key=lambda f: f.item
    )


def test_collect_10000_items_30_percent_failing_then_rerun_the_failures(tmp_path: Path) -> None:
    """The issue's case: the run completes, the report and the file hold exactly the 3,000
    failures with their tracebacks, and the failed items through a fixed stage give exactly
    the missing outputs."""
    path = tmp_path / "failures.jsonl"
    items = range(10_000)
    out = (source(items) >> parse).run(failures=path)
    assert len(out) == 7_000
    saved = load_failures(path)
    assert len(saved) == 3_000
    assert sorted(f.item for f in saved) == [x for x in items if x % 10 in (3, 6, 9)]
    assert all(f.error_type == "ValueError" and "Traceback" in f.traceback for f in saved)
    with open(path, encoding="utf-8") as file:
        assert sum(1 for _ in file) == 3_000
    again = (source(f.item for f in saved) >> parse_fixed).run()
    assert sorted(out + again) == [x * 2 for x in items]


class Reading:
    """An item that is not plain data: the file pickles it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reading) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


@stage(on_error="collect", retries=2)
def read(r: Reading) -> str:
    msg = f"no such file: {r.path}"
    raise FileNotFoundError(msg)


def test_failures_keep_items_of_any_picklable_type_and_count_attempts(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    (source([Reading("a"), Reading("b")]) >> read).run(failures=path)
    saved = sorted(load_failures(path), key=lambda f: f.item.path)  # workers report in any order
    assert [f.item for f in saved] == [Reading("a"), Reading("b")]
    assert [f.attempts for f in saved] == [3, 3]
    assert saved[0].error_type == "FileNotFoundError"
    record = json.loads(path.read_text().splitlines()[0])
    assert "item_pickle" in record
    assert "Reading" in record["item_repr"]


def test_load_failures_skips_a_last_line_cut_by_a_crash_and_refuses_others(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.jsonl"
    (source(range(10)) >> parse).run(backend="inline", failures=path)
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:30])  # a write cut short by a crash
    assert [f.item for f in load_failures(path)] == [3, 6, 9]
    path.write_text("not json\n" + text)
    with pytest.raises(ValueError, match="line 1"):
        load_failures(path)


@stage(on_error="collect")
def call_it(f: Callable[[], int]) -> int:
    raise ValueError(f())


def test_an_item_the_file_cannot_hold_is_said_when_loading(tmp_path: Path) -> None:
    """A lambda (the inline backend pickles nothing) is in the report, and the file says
    it could not hold it."""
    path = tmp_path / "f.jsonl"
    p = source([lambda: 1]) >> call_it
    p.run(backend="inline", failures=path)
    assert p.last_report is not None
    assert len(p.last_report.failures) == 1
    with pytest.raises(ValueError, match="was not stored: the item could not be pickled"):
        load_failures(path)


def test_failure_is_frozen_picklable_and_compares_by_value() -> None:
    f: Failure[int] = Failure("s", 1, "ValueError", "bad", "tb", 2)
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(AttributeError):
        f.item = 2  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    assert f != Failure("s", 2, "ValueError", "bad", "tb", 2)
    assert "item=1" in repr(f)


# --- max_failures ---


def test_max_failures_count_stops_the_run(backend: Backend) -> None:
    p = source(range(1000)) >> parse
    with pytest.raises(FailureBudgetExceeded) as info:
        p.run(backend=backend, max_failures=5)
    text = str(info.value)
    assert "more than 5 item(s) failed" in text
    assert "'parse':" in text
    assert re.search(r"Failure\(stage='parse', item=\d+, .*cannot parse", text)  # quoted
    assert info.value.counts["parse"] > 5


def test_max_failures_fraction_is_judged_per_stage(backend: Backend) -> None:
    p = source(range(400)) >> parse
    assert len(p.run(backend=backend, max_failures=0.35)) == 280  # 30% fail: within
    with pytest.raises(FailureBudgetExceeded, match=r"more than 20\.00% of a stage's items"):
        p.run(backend=backend, max_failures=0.2)


def test_a_fraction_needs_a_sample_before_it_stops_a_run() -> None:
    """The first item failing does not stop a run with a 50% budget."""
    p = source(range(3, 60, 10)) >> parse  # every item fails, 6 of them: below the sample
    with pytest.raises(FailureBudgetExceeded):  # ... judged at the end of the run
        p.run(backend="inline", max_failures=0.5)
    assert p.last_report is not None
    assert len(p.last_report.failures) == 6


@pytest.mark.parametrize("bad", [-1, 1.5, 0.0, True, "3"])
def test_max_failures_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_failures must be"):
        (source(range(3)) >> parse).run(backend="inline", max_failures=bad)


# --- item_timeout ---


@stage(on_error="collect", item_timeout=1.0)
def decode(x: int) -> int:
    """A decoder that spins forever on one item in 500."""
    if x % 500 == 250:
        while True:
            pass
    time.sleep(0.004)
    return x


@stage(on_error="collect", item_timeout=1.0)
def decode_all(x: int) -> int:
    time.sleep(0.004)
    return x


def test_item_timeout_stops_a_hung_item_and_the_run_goes_on() -> None:
    """The issue's case: a decoder that hangs forever on 1 item in 500, item_timeout=1; the
    run takes about the time of the other 499 plus a second, and leaves no process."""
    items = range(500)
    started = time.perf_counter()
    baseline = (source(items) >> decode_all).run()
    base = time.perf_counter() - started
    started = time.perf_counter()
    p = source(items) >> decode
    out = p.run()
    wall = time.perf_counter() - started
    assert out == [x for x in items if x != 250]
    assert len(baseline) == 500
    assert p.last_report is not None
    [failure] = p.last_report.failures
    assert (failure.item, failure.error_type) == (250, "olympipe_typed.ItemTimeout")
    assert wall < base + 1.0 + 2.0, (wall, base)  # about a second more, on a loaded machine


@stage(item_timeout=0.5)
def stall(x: int) -> int:
    if x == 3:
        time.sleep(10)
    return x


def test_item_timeout_under_raise_is_a_stage_error_caused_by_item_timeout(
    backend: Backend,
) -> None:
    started = time.perf_counter()
    with pytest.raises(StageError) as info:
        (source(range(10)) >> stall).run(backend=backend)
    assert isinstance(info.value.__cause__, ItemTimeout)
    assert info.value.stage == "stall"
    assert "item_timeout of 0.5 s" in str(info.value)
    if backend in ("process", "ray"):  # the hung item's process is killed, not waited for
        assert time.perf_counter() - started < 20


@stage(on_error="collect", item_timeout=5.0)
def crash(x: int) -> int:
    if x == 2:
        os._exit(3)
    return x


def test_a_runner_that_dies_fails_only_its_item() -> None:
    p = source(range(6)) >> crash
    assert p.run() == [0, 1, 3, 4, 5]
    assert p.last_report is not None
    [failure] = p.last_report.failures
    assert failure.error_type == "olympipe_typed.WorkerDied"
    assert "exited with code 3" in failure.message


@stage(item_timeout=5.0)
def fails_plainly(x: int) -> int:
    if x == 1:
        msg = "plain failure"
        raise KeyError(msg)
    return x


def test_errors_in_a_runner_keep_their_type_and_traceback() -> None:
    with pytest.raises(StageError) as info:
        (source(range(3)) >> fails_plainly).run()
    assert isinstance(info.value.__cause__, KeyError)
    assert "raise KeyError(msg)" in str(info.value)


# --- max_items_per_worker ---


@stage(max_items_per_worker=10)
def where(x: int) -> tuple[int, int]:
    return x, os.getpid()


def test_max_items_per_worker_replaces_the_worker_and_keeps_results() -> None:
    out = (source(range(35)) >> where).run()
    assert [x for x, _ in out] == list(range(35))
    pids = [pid for _, pid in out]
    assert len(set(pids)) == 4
    assert all(len(set(pids[i : i + 10])) == 1 for i in range(0, 35, 10))


class Model:
    """A class stage that writes a line when built and when closed."""

    def __init__(self, log: str) -> None:
        self.log = log
        self._note("open")

    def _note(self, what: str) -> None:
        with open(self.log, "a", encoding="utf-8") as file:
            file.write(f"{what}\n")

    def __call__(self, x: int) -> int:
        return x + 1

    def close(self) -> None:
        self._note("close")


def test_max_items_per_worker_rebuilds_a_class_stage(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    model = stage(max_items_per_worker=4)(Model)(str(log))
    assert (source(range(10)) >> model).run(backend=backend) == list(range(1, 11))
    assert log.read_text().split() == ["open", "close"] * 3


# --- journal ---


@stage
def square(x: int) -> int:
    return x * x


@flat_stage
def twice_odd(x: int) -> list[int]:
    return [x, -x] if x % 2 else []


def test_journal_run_and_stream_resume(backend: Backend, tmp_path: Path) -> None:
    p = source(range(300)) >> square >> twice_odd
    reference = p.run(backend="inline")
    assert p.run(backend=backend, journal=tmp_path / "a.db") == reference
    report = p.last_report
    assert report is not None  # counts the items, not the journal's envelopes that carry them
    assert report.stage("square").items_in == 300
    assert report.stage("twice_odd").items_out == len(reference)
    got: list[int] = []
    for i, x in enumerate(p.stream(backend=backend, journal=tmp_path / "b.db")):
        got.append(x)
        if i == 40:
            break
    got += p.stream(backend=backend, journal=tmp_path / "b.db")
    assert got == reference
    assert list(p.stream(backend=backend, journal=tmp_path / "b.db")) == []
    assert p.run(backend=backend, journal=tmp_path / "b.db") == reference


def test_journal_stream_counts_no_output_lost_between_the_journal_and_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands after the journal gave an output and before the stream handed it on
    (as can happen in any Python frame between them): that output is not counted as taken,
    and the resumed stream gives it first."""
    from olympipe_typed._journal import Journal

    p = source(range(30)) >> square
    reference = p.run(backend="inline")
    untaken = Journal.untaken

    def interrupted(self: Journal, events: Any) -> Any:
        for n, output in enumerate(untaken(self, events)):
            if n == 5:
                raise KeyboardInterrupt  # output 5 given, never handed on
            yield output

    monkeypatch.setattr(Journal, "untaken", interrupted)
    got: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        got.extend(p.stream(backend="inline", journal=tmp_path / "j.db"))
    assert got == reference[:5]
    monkeypatch.setattr(Journal, "untaken", untaken)
    got += p.stream(backend="inline", journal=tmp_path / "j.db")
    assert got == reference


def test_journal_with_a_fan_out_and_unordered_stages(backend: Backend, tmp_path: Path) -> None:
    p = source(range(200)) >> square.options(workers=2, ordered=False) >> (twice_odd | plus_one)
    reference = p.run(backend="inline")
    out = p.run(backend=backend, journal=tmp_path / "j.db")
    assert sorted(out) == sorted(reference)


class Counted:
    """Counts its calls in a file: which items a resumed run ran again."""

    def __init__(self, log: str) -> None:
        self.log = log

    def __call__(self, x: int) -> int:
        with open(self.log, "a", encoding="utf-8") as file:
            file.write(f"{x}\n")
        if x == 70 and not os.path.exists(self.log + ".fixed"):
            msg = "a bug at item 70"
            raise RuntimeError(msg)
        return x


def test_journal_resumes_after_a_failure_and_a_finished_journal_runs_nothing(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "calls.txt")
    p = source(range(100)) >> stage(Counted)(log)
    journal = tmp_path / "j.db"
    with pytest.raises(StageError, match="a bug at item 70"):
        p.run(backend="inline", journal=journal)
    Path(log + ".fixed").touch()  # the bug is fixed: the stage's code may change
    Path(log).write_text("")
    assert p.run(backend="inline", journal=journal) == list(range(100))
    again = [int(x) for x in Path(log).read_text().split()]
    # The items of the envelope that failed, and the rest: not those done before it.
    assert 0 < again[0] <= 70
    assert again == list(range(again[0], 100))
    Path(log).write_text("")
    assert p.run(backend="process", journal=journal) == list(range(100))
    assert Path(log).read_text() == ""  # finished: nothing ran


def test_wait_for_completion_journal_skips_done_items(tmp_path: Path) -> None:
    log = str(tmp_path / "calls.txt")
    p = source(range(50)) >> stage(Counted)(log)
    Path(log + ".fixed").touch()
    p.wait_for_completion(journal=tmp_path / "j.db")
    p.wait_for_completion(journal=tmp_path / "j.db")
    assert sorted(int(x) for x in Path(log).read_text().split()) == list(range(50))


def test_journal_mismatch(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    (source(range(5)) >> square).run(backend="inline", journal=journal)
    with pytest.raises(JournalMismatch, match=r"'square \(map\)'"):
        (source(range(5)) >> plus_one).run(backend="inline", journal=journal)
    with pytest.raises(JournalMismatch, match="wait_for_completion"):
        (source(range(5)) >> square).wait_for_completion(backend="inline", journal=journal)


def test_journal_refuses_stages_with_state(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch stage holds state"):
        source(range(5)).batch(2).run(backend="inline", journal=tmp_path / "j.db")


def test_journal_and_collected_failures_together(tmp_path: Path) -> None:
    p = source(range(100)) >> parse
    journal, failures = tmp_path / "j.db", tmp_path / "f.jsonl"
    out = p.run(backend="process", journal=journal, failures=failures)
    assert out == p.run(backend="inline", journal=journal)  # finished: the same outputs
    assert len(load_failures(failures)) == 30  # ... and no failure recorded twice
