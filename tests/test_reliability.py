"""Regressions from the fault probes of issue 22: data never lost silently, errors that keep their
context, runs from a thread pool, signals to the whole process group, nested pipelines."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psutil
import pytest

from olympipe_typed import StageError, source, stage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
Local = Literal["process", "thread"]
LOCAL: list[Local] = ["process", "thread"]


class _LazyFile:
    """An item that reads its file when pickled (a lazily loaded record): a missing file makes
    pickling raise FileNotFoundError, an OSError."""

    def __init__(self, index: int, missing: bool) -> None:
        self.index, self.missing = index, missing

    def __reduce__(self) -> tuple[object, ...]:
        if self.missing:
            msg = f"/data/item-{self.index}.bin"
            raise FileNotFoundError(2, "No such file or directory", msg)
        return (_LazyFile, (self.index, False))

    def __repr__(self) -> str:
        return f"_LazyFile({self.index})"


def _lazy_items(n: int, missing: int) -> Iterator[_LazyFile]:
    return (_LazyFile(i, i == missing) for i in range(n))


def _index(x: _LazyFile) -> int:
    return x.index


def _lazy(i: int) -> _LazyFile:
    return _LazyFile(i, i == 259)


@pytest.mark.parametrize("backend", LOCAL)
@pytest.mark.parametrize("kind", ["generator", "list"])
def test_issue_22_source_item_pickling_oserror_fails_the_run(backend: Local, kind: str) -> None:
    """A source item whose pickling raises OSError fails the run naming the stage and the item;
    the stream does not end early as if the source were exhausted."""
    items = _lazy_items(1000, 259)
    data = items if kind == "generator" else list(items)
    pattern = r"stage '_index'.*_LazyFile\(259\).*FileNotFoundError"
    with pytest.raises(StageError, match=pattern):
        (source(data) >> stage(_index)).run(backend=backend)


@pytest.mark.parametrize("backend", LOCAL)
def test_issue_22_stage_output_pickling_oserror_fails_the_run(backend: Local) -> None:
    """A stage output whose pickling raises OSError fails the run naming that stage and item."""
    pattern = r"stage '_lazy'.*_LazyFile\(259\).*FileNotFoundError"
    # As written, one process per stage: the output crosses to the next stage's process.
    # (Fused, _index would take it in the same worker, and nothing would be pickled.)
    pipeline = source(range(1000)) >> stage(_lazy) >> stage(_index)
    with pytest.raises(StageError, match=pattern):
        pipeline.run(backend=backend, plan="per_stage")


class _ClientError(Exception):
    """botocore's pattern: two constructor arguments, ``args`` holding one message, so the
    exception pickles but cannot be unpickled."""

    def __init__(self, response: dict[str, str], operation: str) -> None:
        super().__init__(f"An error occurred ({response['Code']}) when calling {operation}")
        self.response, self.operation = response, operation


def _call_service(x: int) -> int:
    if x == 3:
        raise _ClientError({"Code": "NoSuchKey"}, "GetObject")
    return x


@pytest.mark.parametrize("backend", LOCAL)
def test_issue_22_exception_that_cannot_be_unpickled_keeps_stage_and_item(backend: Local) -> None:
    """A stage exception that pickles but cannot be rebuilt reaches the caller as a StageError
    naming the stage, the item and the original error's type and message."""
    with pytest.raises(StageError) as info:
        (source(range(6)) >> stage(_call_service)).run(backend=backend)
    message = str(info.value)
    assert info.value.stage == "_call_service"
    assert info.value.item_repr == "3"
    assert "_ClientError" in message
    assert "NoSuchKey" in message


class _Unreadable:
    """An item that pickles, but whose unpickling raises ``error`` (a class from a module the
    reader lacks, a changed format)."""

    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __reduce__(self) -> tuple[object, ...]:
        return (_refuse, (self.error,))


def _refuse(error: type[Exception]) -> object:
    msg = "this item cannot be read here"
    raise error(msg)


def _unreadable_at_two(x: int) -> object:
    return _Unreadable(ValueError) if x == 2 else x


def _eof_at_two(x: int) -> object:
    return _Unreadable(EOFError) if x == 2 else x


def _same(x: object) -> object:
    return x


@pytest.mark.parametrize("backend", LOCAL)
def test_issue_22_output_that_cannot_be_unpickled_in_the_caller_names_the_stage(
    backend: Local,
) -> None:
    """An output the caller cannot unpickle fails the run with a StageError naming the stage
    that produced it, not a bare ValueError."""
    with pytest.raises(StageError, match=r"stage '_unreadable_at_two'.*ValueError"):
        (source(range(5)) >> stage(_unreadable_at_two)).run(backend=backend)


@pytest.mark.parametrize("backend", LOCAL)
@pytest.mark.parametrize("maker", [_unreadable_at_two, _eof_at_two])
def test_issue_22_item_that_cannot_be_unpickled_in_a_worker_fails_the_run(
    backend: Local, maker: Callable[[int], object]
) -> None:
    """An item the next stage cannot unpickle (ValueError, or EOFError, which looks like a
    closed pipe) fails the run at once, naming both stages; it never hangs."""
    first = stage(maker).options(name="maker")
    started = time.monotonic()
    with pytest.raises(StageError) as info:
        (source(range(5)) >> first >> stage(_same)).run(backend=backend, plan="per_stage")
    assert time.monotonic() - started < 30
    assert info.value.stage == "_same"
    assert "maker" in str(info.value)
    assert "could not be unpickled" in str(info.value)


def _from_a_pool(n: int) -> list[int]:
    return (source(range(n)) >> stage(_same_int)).run(start_method="fork")


def _same_int(x: int) -> int:
    return x


def test_issue_22_runs_from_a_thread_pool_under_fork() -> None:
    """Pipelines run from a ThreadPoolExecutor's thread under fork, as services and notebooks
    do: every run succeeds (the forked workers must not run the pool's exit hook)."""
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_from_a_pool, [50] * 12))
    assert results == [list(range(50))] * 12


def _nested(x: int) -> int:
    return sum((source(range(x)) >> stage(_same_int)).run())


def test_issue_22_a_stage_may_run_a_process_pipeline() -> None:
    """A stage that runs a process pipeline inside a process worker works (no "daemonic
    processes are not allowed to have children")."""
    assert (source([3, 4, 5]) >> stage(_nested)).run() == [3, 6, 10]


ARRAYS = """
import itertools, sys
import numpy as np
from olympipe_typed import source, stage

def same(a: np.ndarray) -> np.ndarray:
    return a

if __name__ == "__main__":
    big = (np.full(1_000_000, i % 7, dtype=np.float64) for i in itertools.count())
    for i, _ in enumerate((source(big) >> stage(same) >> stage(same)).stream()):
        if i == 3:
            print("ready", flush=True)  # every worker is running: arrays are in flight
"""


def _segments(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"olympipe-{pid}-")]


def _start_arrays(tmp_path: Path) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    script = tmp_path / "arrays.py"
    script.write_text(ARRAYS)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal or a job runner gives
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _segments(proc.pid):
        time.sleep(0.05)
    assert _segments(proc.pid), "no segment was used"
    return proc, psutil.Process(proc.pid).children(recursive=True)


def _gone(procs: list[psutil.Process], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return [p.pid for p in alive]


def test_issue_22_sigterm_to_the_group_leaves_no_shared_memory(tmp_path: Path) -> None:
    """SIGTERM to the whole process group (kill, timeout, Slurm, Kubernetes): every process
    exits, the caller by SIGTERM, and the run's segments leave /dev/shm."""
    proc, kids = _start_arrays(tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert _gone(kids, 5.0) == []
    assert _segments(proc.pid) == []


def test_issue_22_two_quick_ctrl_c_leave_nothing_and_one_traceback(tmp_path: Path) -> None:
    """Two SIGINTs to the group a few milliseconds apart: one traceback, every worker gone,
    nothing left in /dev/shm."""
    proc, kids = _start_arrays(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert err.count("Traceback") == 1, err
    assert err.strip().splitlines()[-1] == "KeyboardInterrupt"
    assert _gone(kids, 5.0) == []
    assert _segments(proc.pid) == []


def _imported_modules(path: Path) -> set[str]:
    """The top-level modules a file imports at module level."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_issue_22_the_dev_extra_has_what_the_tests_import() -> None:
    """``pip install -e '.[dev]'`` is enough to collect the tests: every third-party module the
    test files import at module level comes from a core or dev requirement."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.split(r"[<>=!~\[ ;]", req)[0].lower().replace("_", "-") for req in wanted}
    local = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"olympipe_typed", "examples"}
    dists = packages_distributions()
    missing: dict[str, str] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for module in _imported_modules(path) - local - set(sys.stdlib_module_names):
            provided = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
            if not provided & names:
                missing[module] = path.name
    assert missing == {}


CLOSED_ELSEWHERE = """
import itertools, os, signal, threading
from olympipe_typed import source, stage

def same(x: int) -> int:
    return x

if __name__ == "__main__":
    stream = (source(itertools.count()) >> stage(same)).stream()
    assert next(stream) == 0
    closer = threading.Thread(target=stream.close)  # the teardown runs in this thread
    closer.start()
    closer.join()
    print("closed", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # no run on: the default action, at once
    print("still alive", flush=True)
"""


def test_issue_22_a_stream_closed_in_another_thread_leaves_sigterm_as_it_was(
    tmp_path: Path,
) -> None:
    """A stream closed from another thread tears down without error, and a later SIGTERM ends
    the process as if no run had been."""
    script = tmp_path / "closed_elsewhere.py"
    script.write_text(CLOSED_ELSEWHERE)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == "closed\n", done.stderr
    assert done.returncode == -signal.SIGTERM, done.stderr


SIGNAL_SCRIPTS = {
    # A stream closed from another thread, then a second run that gets SIGTERM: torn down too.
    "after a stream closed elsewhere": """
        stream = (source(itertools.count()) >> stage(same)).stream()
        assert next(stream) == 0
        closer = threading.Thread(target=stream.close)
        closer.start()
        closer.join()
        for i, _ in enumerate((source(arrays()) >> stage(same) >> stage(same)).stream()):
            if i == 3:
                os.kill(os.getpid(), signal.SIGTERM)
    """,
    # SIGTERM while the user's loop body runs, the stream held in a variable.
    "in the loop body": """
        it = (source(arrays()) >> stage(same) >> stage(same)).stream()
        for i, _ in enumerate(it):
            if i == 3:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
    """,
}


@pytest.mark.parametrize("case", sorted(SIGNAL_SCRIPTS))
def test_issue_22_sigterm_always_tears_down_and_kills(tmp_path: Path, case: str) -> None:
    """SIGTERM during a run ends the caller by SIGTERM, silently, with every worker gone and
    nothing left in /dev/shm, wherever it lands."""
    body = "\n".join(line[4:] for line in SIGNAL_SCRIPTS[case].splitlines())
    script = tmp_path / "term.py"
    script.write_text(SIGNAL_HEADER + textwrap.indent(body, "    "))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert _segments(proc.pid) == []
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == proc.pid]


SIGNAL_HEADER = """
import itertools, multiprocessing, os, signal, threading, time
import numpy as np
from olympipe_typed import source, stage

def same(x: object) -> object:
    return x

def arrays():
    return (np.full(1_000_000, i % 7, dtype=np.float64) for i in itertools.count())

if __name__ == "__main__":
"""


def test_issue_22_processes_forked_during_a_run_die_of_sigterm(tmp_path: Path) -> None:
    """A process the user forks while a run is on is not given the run's SIGTERM handler:
    ``terminate()`` ends it with -SIGTERM."""
    body = """
        for i, _ in enumerate((source(range(5)) >> stage(same)).stream(start_method="fork")):
            if i == 2:
                child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
                child.start()
                child.terminate()
                child.join(10)
                print(child.exitcode, flush=True)
    """
    script = tmp_path / "fork_child.py"
    script.write_text(SIGNAL_HEADER + textwrap.indent(textwrap.dedent(body), "    "))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(-signal.SIGTERM), done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_issue_22_a_sigterm_handler_set_during_a_run_is_kept(tmp_path: Path) -> None:
    """A SIGTERM handler the user sets while a run is on is still in place after it."""
    body = """
        for i, _ in enumerate((source(range(5)) >> stage(same)).stream()):
            if i == 2:
                signal.signal(signal.SIGTERM, lambda *_: print("mine", flush=True))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        print("after", flush=True)
    """
    script = tmp_path / "user_handler.py"
    script.write_text(SIGNAL_HEADER + textwrap.indent(textwrap.dedent(body), "    "))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mine", "after"], done.stderr
