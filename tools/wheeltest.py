"""Run the test suite against the built wheel, as a user installs it, on every supported Python.

    python tools/wheeltest.py dist/            # every leg below, then one summary line

Each leg installs the wheel (not the checkout: no editable install, no path entry) into a
virtual environment made anew for the run, copies the tests and examples to a folder that
holds no ``olympipe_typed/``, and runs pytest there. The tests check at start that they
import the installed package (tests/conftest.py), so a module missing from the wheel fails
the suite. A Python missing from the machine is said in one line, never skipped silently.

Legs (about 10 minutes on a 2-core machine, in two lanes side by side: a leg uses about a
third of 2 cores, most of its time being processes starting, items timed on purpose and
timeouts waited for):
- lane 1, 3.11, fork (the default on Linux before 3.14): the whole suite, every backend, Ray
  and the demo included; then 3.11 with forkserver (the default on Linux from 3.14): the
  process backend's own, fault, long-run and property tests (the pickling is spawn's, tested
  in lane 2; what differs is the workers' parent, the forkserver, which teardown, signals and
  leak checks exercise).
- lane 2, 3.12 and 3.13: the conformance and fault tests of the process backend, the examples
  and the typing corpus; then 3.11 with spawn as the default start method (macOS has it): the
  conformance and fault tests of the process backend (every stage is pickled by reference into
  a fresh interpreter). (The inline and thread backends start no process: the whole-suite leg
  tests them; the inline reference runs inside each conformance test on every leg.)

A leg's output goes to ``build/wheeltest/<leg>.log`` and is printed whole when the leg ends, so
that two legs never interleave their lines. Each leg has a copy of the tests and a pytest
``--basetemp`` of its own.
The tests' leak checks are per process (children of the test process, shared memory named by
its pid), so a leg never takes another's processes or segments for its own.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "wheeltest"
# What the tests read besides themselves: examples, docs they check, checker configurations.
TREE = ["tests", "examples", "docs", "stubs", "README.md", "CHANGELOG.md", "mypy.ini",
        "pyproject.toml"]  # fmt: skip
# The conformance tests (every backend against inline, each start method of the process
# backend), the fault tests, the long-run options (test_resume_after_kill.py, a minute of kills
# and resumes, runs in the whole-suite leg only).
CORE = [
    "tests/test_composition.py",
    "tests/test_stages.py",
    "tests/test_errors.py",
    "tests/test_fluent.py",
    "tests/test_olympipe_readme.py",
    "tests/test_olympipe_api.py",
    "tests/test_process_backend.py",
    "tests/test_faults.py",
    "tests/test_property.py",
    "tests/test_reliability.py",
    "tests/test_long_runs.py",
    "tests/test_planner.py",
    "tests/test_io_stages.py",
    "tests/test_server.py",
]
# The forkserver leg: where the workers' parent matters (see the module's docstring).
FORKSERVER = [
    "tests/test_process_backend.py",
    "tests/test_faults.py",
    "tests/test_reliability.py",
    "tests/test_long_runs.py",
    "tests/test_property.py",
]
# What a user runs first: the package's own entry points, the examples, the image demo.
FIRST = ["tests/test_packaging.py", "tests/test_examples.py", "tests/test_images_demo.py"]
EXTRA = [
    "tests/test_typing_corpus.py",
    "tests/test_exports.py",
    "tests/test_docs.py",
    "tests/test_ship.py",
    "tests/test_cache.py",
    "tests/test_pipe.py",
    "tests/test_forked.py",
]
SUMMARY = re.compile(r"=+ (?P<body>.*\d+ (?:passed|failed|error).*?) in [\d.]+s")


@dataclass
class Leg:
    """One pytest run: a Python, a default start method, the tests, the extras installed."""

    python: str
    start_method: str  # "" leaves the interpreter's default
    tests: list[str]
    extras: str
    deselect: str = ""  # a pytest -m expression
    backends: str = ""  # the conformance tests' backends, when not all
    outcome: str = ""  # pytest's counts, or why the leg did not run
    ok: bool = True
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """``3.11-spawn``: the leg's log, test tree and temporary folder are named after it."""
        return f"{self.python}-{self.start_method or 'fork'}"

    @property
    def label(self) -> str:
        method = self.start_method or "fork"
        scope = "whole suite" if self.tests == ["tests"] else "conformance, faults"
        return f"Python {self.python}, {method}, {scope}"


def lanes() -> list[list[Leg]]:
    """The legs of ``make test``: two lanes that run side by side, each leg after the other."""
    every_python = [*CORE, *FIRST, *EXTRA]
    return [
        [
            Leg("3.11", "", ["tests"], "dev,demo,ray,progress,plot,compat-test"),
            Leg("3.11", "forkserver", [*FORKSERVER, *FIRST], "dev,demo", "not ray", "process"),
        ],
        [
            Leg("3.12", "", every_python, "dev,demo", "not ray", "process"),
            Leg("3.13", "", every_python, "dev,demo", "not ray", "process"),
            Leg("3.11", "spawn", [*CORE, *FIRST], "dev,demo", "not ray", "process"),
        ],
    ]


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` ("3.12"): on PATH, else under pyenv; None if none runs."""
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}") or ""]
    candidates += sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))[::-1]
    for exe in candidates:
        if not exe:
            continue
        probe = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return exe
    return None


def venv_for(version: str, exe: str, wheel: Path, extras: str) -> Path:
    """A virtual environment made anew, with the wheel and its ``extras`` installed from it."""
    started = time.monotonic()
    venv = WORK / f"venv-{version}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([exe, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, f"{wheel}[{extras}]"], check=True)
    say(f"Python {version}: installed in {time.monotonic() - started:.0f} s")
    return python


def tree_for(name: str) -> Path:
    """A copy of what the tests read, without the package: they can import only the wheel's.
    One per leg (``name``): two legs of one Python may run at once."""
    tree = WORK / f"tree-{name}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for name in TREE:
        src = ROOT / name
        if src.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", ".mypy_cache")
            shutil.copytree(src, tree / name, ignore=ignore)
        else:
            shutil.copy2(src, tree / name)
    assert not (tree / "olympipe_typed").exists()
    return tree


_PRINT = threading.Lock()


def say(text: str) -> None:
    """Print ``text`` whole: the lanes' lines never interleave."""
    with _PRINT:
        print(text, flush=True)


def run_leg(leg: Leg, python: Path, tree: Path) -> None:
    """Run pytest for ``leg``, its output to a log printed when it ends; record its counts."""
    env = dict(os.environ)
    env["OLYMPIPE_TYPED_TEST_INSTALLED"] = "1"  # conftest: fail unless the wheel is imported
    env.pop("PYTHONPATH", None)
    if leg.backends:
        env["OLYMPIPE_TYPED_TEST_BACKENDS"] = leg.backends
    if leg.start_method:
        # Every Python process of the run starts with this default, as 3.14 does with its own:
        # the tests, the scripts they start and the examples alike (tests/site/sitecustomize.py).
        env["OLYMPIPE_TYPED_TEST_START_METHOD"] = leg.start_method
        env["PYTHONPATH"] = str(tree / "tests" / "site")
    name = leg.name  # the log, the test tree and the temporary folder are named after it
    log = WORK / f"{name}.log"
    with tempfile.TemporaryDirectory(prefix=f"wheeltest-{name}-") as temp:
        command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--durations=5",
                   "--basetemp", str(Path(temp) / "pytest"), *leg.tests]  # fmt: skip
        if leg.deselect:
            command += ["-m", leg.deselect]
        say(f"=== {leg.label}: started, output in {log}\n    {' '.join(command[1:])}")
        started = time.monotonic()
        with log.open("w") as out:
            code = subprocess.run(
                command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        leg.seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    found = SUMMARY.findall("\n".join(text.splitlines()[-50:]))
    leg.outcome = found[-1] if found else f"pytest exited {code} without a summary"
    leg.ok = code == 0
    say(f"\n=== {leg.label}: ended in {leg.seconds:.0f} s\n{text}")


class Envs:
    """One virtual environment per Python, made once, by the first lane to ask."""

    def __init__(self, wheel: Path, todo: list[Leg]) -> None:
        self.wheel = wheel
        self.todo = todo
        self.made: dict[str, Path | None] = {}
        self.locks = {leg.python: threading.Lock() for leg in todo}

    def get(self, version: str) -> Path | None:
        with self.locks[version]:
            if version not in self.made:
                self.made[version] = self._make(version)
            return self.made[version]

    def _make(self, version: str) -> Path | None:
        exe = find_python(version)
        if exe is None:
            return None
        wanted = {e for leg in self.todo if leg.python == version for e in leg.extras.split(",")}
        extras = ",".join(sorted(wanted))
        say(f"=== Python {version} ({exe}): installing {self.wheel.name}[{extras}]")
        return venv_for(version, exe, self.wheel, extras)


def run_lane(lane: list[Leg], envs: Envs) -> None:
    """The lane's legs, one after the other."""
    for leg in lane:
        try:
            python = envs.get(leg.python)
            if python is None:
                leg.outcome = f"NOT RUN: Python {leg.python} is not on this machine"
                say(f"=== {leg.label}: {leg.outcome}")
                continue
            run_leg(leg, python, tree_for(leg.name))
        except Exception as exc:  # a leg that cannot start fails; the other lane goes on
            leg.ok, leg.outcome = False, f"did not run: {type(exc).__name__}: {exc}"
            say(f"=== {leg.label}: {leg.outcome}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Test the built wheel on every supported Python.")
    parser.add_argument("dist", type=Path, help="the folder `python -m build` wrote")
    parser.add_argument("--only", default="", help="run the legs of these Pythons (3.12,3.13)")
    args = parser.parse_args()
    wheels = sorted(args.dist.glob("olympipe_typed-*.whl"))
    if len(wheels) != 1:
        print(f"expected one wheel in {args.dist}, found {[w.name for w in wheels]}")
        return 2
    wheel = wheels[0].resolve()
    print(f"testing {wheel.name}, installed in a virtual environment of its own per Python")
    todo = [
        [leg for leg in lane if not args.only or leg.python in args.only.split(",")]
        for lane in lanes()
    ]
    every = [leg for lane in todo for leg in lane]
    WORK.mkdir(parents=True, exist_ok=True)
    envs = Envs(wheel, every)
    threads = [threading.Thread(target=run_lane, args=(lane, envs)) for lane in todo if lane]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n=== the wheel's tests, per Python and start method")
    passed = failed = skipped = 0
    for leg in every:
        print(f"{leg.label:<45} {leg.seconds:6.0f} s  {leg.outcome}")
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", leg.outcome)}
        broken = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
        if not leg.ok and not broken:
            broken = 1  # pytest ended without counting a failure (a crash): the leg failed
        passed += counts.get("passed", 0)
        failed += broken
        skipped += counts.get("skipped", 0)
    print(f"wheel: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if all(leg.ok for leg in every) else 1


if __name__ == "__main__":
    sys.exit(main())
