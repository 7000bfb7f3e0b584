"""Stages of a script under every start method: the script's classes stay the script's (issue 22)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from pathlib import Path

StartMethod = Literal["fork", "forkserver", "spawn"]

HEADER = """\
import sys
from dataclasses import dataclass

from olympipe_typed import StageError, source, stage


@dataclass
class Rec:
    x: int
"""


@pytest.fixture(params=["spawn", "forkserver", "fork"])
def start_method(request: pytest.FixtureRequest) -> StartMethod:
    """Each multiprocessing start method in turn."""
    name: StartMethod = request.param
    return name


def run_script(tmp_path: Path, body: str, start_method: StartMethod) -> str:
    """Run HEADER + ``body`` as a script given the start method; its stdout, once it succeeded."""
    script = tmp_path / "script.py"
    script.write_text(HEADER + textwrap.dedent(body))
    done = subprocess.run(
        [sys.executable, str(script), start_method],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(120)
def test_issue_22_stage_returns_script_class(tmp_path: Path, start_method: StartMethod) -> None:
    """A @stage function of a script gives instances of the script's own class to the caller."""
    body = """
    @stage
    def make(x: int) -> Rec:
        return Rec(x * 2)


    if __name__ == "__main__":
        out = (source([1, 2, 3]) >> make).run(start_method=sys.argv[1])
        assert out == [Rec(2), Rec(4), Rec(6)], out
        assert type(out[0]) is Rec, type(out[0])
        print("ok")
    """
    assert run_script(tmp_path, body, start_method) == "ok\n"


@pytest.mark.timeout(120)
def test_issue_22_lambda_returns_script_class(tmp_path: Path, start_method: StartMethod) -> None:
    """A lambda stage, sent by value, builds the worker's own script class, not a copy."""
    body = """
    if __name__ == "__main__":
        out = (source([1, 2]) >> stage(lambda x: Rec(x))).run(start_method=sys.argv[1])
        assert out == [Rec(1), Rec(2)], out
        assert type(out[0]) is Rec, type(out[0])
        print("ok")
    """
    assert run_script(tmp_path, body, start_method) == "ok\n"


@pytest.mark.timeout(120)
def test_issue_22_names_the_worker_lacks_go_by_value(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """Stages defined under the __main__ guard, or reading a name set there, still run."""
    body = """
    @stage
    def scale(r: Rec) -> Rec:
        return Rec(r.x * FACTOR)


    if __name__ == "__main__":
        FACTOR = 10

        def helper(x: int) -> Rec:
            return Rec(x + 1)

        @stage
        def late(x: int) -> Rec:
            return helper(x)

        out = (source([1, 2]) >> late >> scale).run(start_method=sys.argv[1])
        assert out == [Rec(20), Rec(30)], out
        assert type(out[0]) is Rec, type(out[0])
        print("ok")
    """
    assert run_script(tmp_path, body, start_method) == "ok\n"


@pytest.mark.timeout(120)
def test_issue_22_class_stages_return_script_class(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """Class stages of a script, plain or decorated, give the script's own class."""
    body = """
    class Model:
        def __init__(self, k: int) -> None:
            self.k = k

        def __call__(self, x: int) -> Rec:
            return Rec(x * self.k)


    @stage
    class Bump:
        def __call__(self, r: Rec) -> Rec:
            return Rec(r.x + 1)


    if __name__ == "__main__":
        out = (source([1, 2]) >> stage(Model)(3) >> Bump()).run(start_method=sys.argv[1])
        assert out == [Rec(4), Rec(7)], out
        assert type(out[0]) is Rec, type(out[0])
        print("ok")
    """
    assert run_script(tmp_path, body, start_method) == "ok\n"


@pytest.mark.timeout(120)
def test_issue_22_worker_traceback_shows_script_source(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """A script's raising stage, and a raising lambda, show their source lines in StageError."""
    body = """
    @stage
    def boom(x: int) -> int:
        raise ValueError(f"bad item {x}")  # the raising line


    if __name__ == "__main__":
        for st in [boom, stage(lambda x: 1 // (x - x))]:  # the raising lambda
            try:
                (source([1]) >> st).run(start_method=sys.argv[1])
            except StageError as err:
                print(err)
    """
    out = run_script(tmp_path, body, start_method)
    assert 'raise ValueError(f"bad item {x}")  # the raising line' in out
    assert "stage(lambda x: 1 // (x - x))]:  # the raising lambda" in out
    assert "<dynamic-code>" not in out


@pytest.mark.timeout(120)
def test_issue_22_undecorated_stages_under_the_guard_run(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """``stage(f)`` and ``stage(Model)()`` on a function and a class defined under the __main__
    guard, which the workers' import of the script does not define, still run."""
    body = """
    if __name__ == "__main__":
        def double(x: int) -> int:
            return 2 * x

        class Offset:
            def __call__(self, x: int) -> Rec:
                return Rec(x + 1)

        out = (source([1, 2]) >> stage(double) >> stage(Offset)()).run(start_method=sys.argv[1])
        assert out == [Rec(3), Rec(5)], out
        print("ok")
    """
    assert run_script(tmp_path, body, start_method) == "ok\n"


@pytest.mark.timeout(120)
def test_issue_22_stage_sees_values_set_under_the_guard(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """A script-level stage reads the values the caller has, even those changed under the
    __main__ guard, which the workers' import of the script does not see: as inline."""
    body = """
    SCALE = 1
    LABELS: list[str] = []


    @stage
    def scale(x: int) -> Rec:
        return Rec(x * SCALE + len(LABELS))


    if __name__ == "__main__":
        SCALE = 10
        LABELS.append("set under the guard")
        out = (source([0, 1, 2]) >> scale).run(start_method=sys.argv[1])
        assert out == [Rec(1), Rec(11), Rec(21)], out
        assert type(out[0]) is Rec, type(out[0])
        print("ok")
    """
    assert run_script(tmp_path, body, start_method) == "ok\n"
