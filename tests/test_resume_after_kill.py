"""Journals resumed after a SIGKILL or Ctrl-C at random moments (API.md §8): each trial a fresh
process running tests/journal_child.py, killed once, then resumed until it finishes.

Run in the whole-suite leg of ``make test`` (Python 3.11); the children use the leg's
default start method.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import psutil
import pytest

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent


def _cursor(journal: Path) -> int:
    cursor = Path(f"{journal}-cursor")
    return int.from_bytes(cursor.read_bytes()[:8], sys.byteorder) if cursor.exists() else 0


ITEMS = 2000  # journal_child's source


def _done(journal: Path) -> int:
    """Source items the journal holds as done."""
    if not journal.exists():
        return 0
    db = sqlite3.connect(journal)
    try:
        blobs = db.execute("SELECT items FROM chunks").fetchall()
    except sqlite3.Error:  # killed before the tables were made, or being made
        return 0
    finally:
        db.close()
    return sum(count for (blob,) in blobs for _, count, _ in pickle.loads(blob))


def _segments(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"olympipe-{pid}-")]


def _attempt(
    mode: str,
    journal: Path,
    out: Path,
    kill: tuple[signal.Signals, float] | None,
    at_done: int | None = None,
) -> int:
    """Run the child once, with a signal after a delay, or (``at_done``) once its journal holds
    that many items done; its exit code, once every process it started is gone and its shared
    memory with them."""
    errors = out.with_suffix(".err")
    with open(errors, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "journal_child.py"), mode, str(journal), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    kids: list[psutil.Process] = []
    if kill is not None:
        how, delay = kill
        deadline = time.monotonic() + (delay if at_done is None else 60.0)
        while proc.poll() is None and time.monotonic() < deadline:
            if at_done is not None and _done(journal) >= at_done:
                break
            time.sleep(0.005 if at_done is not None else 0.01)
        if proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                kids = psutil.Process(proc.pid).children(recursive=True)
            if how == signal.SIGINT:
                os.killpg(proc.pid, how)  # Ctrl-C in a terminal: the whole group
            else:
                os.kill(proc.pid, how)  # the caller alone: its workers must notice
    proc.wait(timeout=120)
    assert proc.returncode == 0 or kill is not None, errors.read_text()
    assert _gone(kids, 5.0) == [], "processes left behind"
    # Workers started after ``kids`` was read remove the run's files once they notice the
    # caller is gone: within their watch's period (0.5 s).
    deadline = time.monotonic() + 3.0
    while _segments(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _segments(proc.pid) == []
    return proc.returncode


def _timeline(mode: str, tmp_path: Path) -> tuple[float, float, float]:
    """An uninterrupted run of the child, watched: when its journal first held a done item,
    when it last had items left to do, and when the process ended (seconds from its start)."""
    journal = tmp_path / "timing.db"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "journal_child.py"), mode, str(journal), str(tmp_path / "t")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first = last = 0.0
    while proc.poll() is None:
        done = _done(journal)
        now = time.monotonic() - started
        if done and not first:
            first = now
        if done < ITEMS:
            last = now
        time.sleep(0.005)
    duration = time.monotonic() - started
    assert proc.returncode == 0
    first = first or 0.5 * duration
    return first, max(last, first), duration


def _gone(procs: list[psutil.Process], seconds: float) -> list[int]:
    """The processes still alive after ``seconds`` (zombies count as gone: their parent
    was killed, and reaping them is init's job)."""
    deadline = time.monotonic() + seconds
    alive = procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _running(p)]
    return [p.pid for p in alive]


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _reference() -> list[bytes]:
    sys.path.insert(0, str(HERE))
    try:
        import journal_child
    finally:
        sys.path.remove(str(HERE))
    return journal_child.pipeline().run(backend="inline")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
@pytest.mark.parametrize("mode", ["run", "stream"])
def test_killed_at_random_moments_then_resumed(
    tmp_path: Path, how: signal.Signals, mode: Literal["run", "stream"]
) -> None:
    """Ten trials per case (twenty per signal), each a fresh process killed once at a random
    moment (two during start-up, two in the final flush, six once a random share of the items
    is done, so that a slower or faster host still kills mid-run), then resumed until it
    finishes.

    ``run``: every final result equals the uninterrupted run's. ``stream``: across the
    attempts every output was taken exactly once, as the journal counts (an output is taken
    when the caller comes back for the next one). After a SIGKILL the one output the caller
    held may have been written and not yet taken: it must come again, first, in the next
    attempt. Ctrl-C lands in the library's code (the child writes outputs from C), so there
    the outputs written are exactly the outputs taken."""
    reference = _reference()
    first, last, duration = _timeline(mode, tmp_path)
    rng = random.Random(f"{mode}-{how}")
    cut = 0  # trials whose kill left part of the items done: the test of resuming
    for trial in range(10):
        journal, out = tmp_path / f"j{trial}.db", tmp_path / f"out{trial}"
        at_done: int | None = None
        if trial < 2:
            delay = rng.uniform(0.02, first)  # start-up: imports, journal, workers
        elif trial < 4:
            delay = rng.uniform(last, duration)  # the final flush
        else:  # while items are being done: at a share of them, whatever the host's speed
            delay = rng.uniform(first, last)
            at_done = rng.randint(ITEMS // 10, ITEMS * 9 // 10)
        written: list[bytes] = []
        taken = [0]
        for attempt in range(5):
            target = Path(f"{out}.{attempt}")
            kill = (how, delay) if attempt == 0 else None
            code = _attempt(mode, journal, target, kill, at_done if attempt == 0 else None)
            if attempt == 0 and 0 < _done(journal) < ITEMS:
                cut += 1
            if mode == "stream":
                written.append(target.read_bytes() if target.exists() else b"")
                taken.append(_cursor(journal))
            if code == 0:
                break
        else:
            pytest.fail("the run did not finish after being resumed")
        if mode == "run":
            assert pickle.loads(target.read_bytes()) == reference, (trial, delay)
            continue
        # stream: each attempt wrote what it took, in order, after what the last one took
        for got, before, after in zip(written, taken[:-1], taken[1:], strict=True):
            outputs = [line + b"\n" for line in got.split(b"\n")[:-1]]
            count = after - before
            assert outputs[:count] == reference[before:after], (trial, delay)
            extra = outputs[count:]
            if how == signal.SIGINT:
                assert extra == [], (trial, delay)
            else:
                assert extra in ([], reference[after : after + 1]), (trial, delay)
        assert taken[-1] == len(reference), (trial, delay)
    assert cut >= 3, f"only {cut} of 10 kills landed mid-run"


def test_a_journal_cut_by_a_kill_is_still_a_database(tmp_path: Path) -> None:
    """What a kill leaves: the database opens and checks clean, its rows are whole."""
    journal, out = tmp_path / "j.db", tmp_path / "out"
    _attempt("run", journal, out, (signal.SIGKILL, 0.5))
    if journal.exists():
        db = sqlite3.connect(journal)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            for (blob,) in db.execute("SELECT items FROM chunks"):
                rows: list[tuple[int, int, list[Any]]] = pickle.loads(blob)
                assert all(first >= 0 and n > 0 for first, n, _ in rows)
        finally:
            db.close()
    _attempt("run", journal, out, None)
    assert pickle.loads(out.read_bytes()) == _reference()
