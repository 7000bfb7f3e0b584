"""olympipe 2.2's API on this engine (``olympipe_typed.olympipe``), tried on a real library.

olympict 2.0.0, image and video pipelines with a CLI by olympipe's author, is installed
without its olympipe dependency into a folder of its own, and run in a fresh interpreter that
registers ``olympipe_typed.olympipe`` as ``olympipe`` (tests/olympict_run.py): its README
examples and its CLI, with the files written compared to a plain loop's. olympipe 2.2.0 itself
is installed the same way, only to list its public names. Its other dependencies (numpy,
opencv, click, natsort) come with the ``compat-test`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import olympipe_typed.olympipe
from olympipe_typed import Pipeline, PipelineExecutionError, StageError

pytestmark = pytest.mark.timeout(600)

HERE = Path(__file__).resolve().parent


def _pip_target(root: Path, requirement: str) -> Path:
    """``requirement`` installed without dependencies into a folder of its own."""
    target = root / requirement.split("==")[0]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--target", str(target), requirement]
    subprocess.run(command, check=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("olympipe-libs")
    return {
        "olympict": _pip_target(root, "olympict==2.0.0"),
        "olympipe": _pip_target(root, "olympipe==2.2.0"),
    }


def _run(args: list[str], path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONHASHSEED"] = "0"  # olympict colours boxes by hash(label), in each worker
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_olympict_cli_resize_matches_a_plain_loop(
    installed: dict[str, Path], tmp_path: Path
) -> None:
    """``olympict source IN resize -w 64 -h 64 save OUT`` writes what cv2 in a loop writes."""
    import cv2
    import numpy as np

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):
        img = rng.integers(0, 255, (50 + 9 * i, 70 + 5 * i, 3), dtype=np.uint8)
        assert cv2.imwrite(str(src / f"{i:03d}.png"), img)
    script = str(HERE / "olympict_run.py")
    cli = ["cli", "source", str(src), "resize", "-w", "64", "-h", "64", "save", str(out)]
    _run([script, *cli], installed["olympict"], tmp_path)

    names = sorted(p.name for p in src.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        original = cv2.imread(str(src / name))
        assert original is not None
        expected = cv2.resize(original, (64, 64), interpolation=cv2.INTER_LINEAR)
        written = cv2.imread(str(out / name))
        assert written is not None
        assert written.shape == (64, 64, 3)
        assert np.array_equal(written, expected), name


def test_olympict_readme_examples(installed: dict[str, Path], tmp_path: Path) -> None:
    """olympict's README examples (all but those needing torch, a display or a video), each
    checked in tests/olympict_run.py against the result it promises or a plain loop's."""
    script = str(HERE / "olympict_run.py")
    done = _run([script, "readme", str(tmp_path)], installed["olympict"], tmp_path)
    assert "olympict README examples: all checked" in done.stdout


_LIST_NAMES = """
import json, types, olympipe
own, foreign = [], []
for name in dir(olympipe):
    if name.startswith("_"):
        continue
    obj = getattr(olympipe, name)
    if isinstance(obj, types.ModuleType):
        origin = obj.__name__
    else:
        origin = getattr(obj, "__module__", None) or ""
    mine = origin.startswith("olympipe") or name == "RouteHandler"  # a tuple[...] alias
    (own if mine else foreign).append(name)  # foreign: typing, threading, os, tqdm, ...
print(json.dumps({"own": own, "foreign": foreign}))
"""


def test_every_public_name_of_olympipe_is_here(installed: dict[str, Path], tmp_path: Path) -> None:
    """Each name olympipe 2.2.0's top-level module defines or re-exports from its own
    modules exists in olympipe_typed.olympipe (stdlib and tqdm names it imported for its
    own use are listed apart, and are not its API)."""
    done = _run(["-c", _LIST_NAMES], installed["olympipe"], tmp_path)
    names = json.loads(done.stdout)
    own = names["own"]
    assert {"Pipeline", "PipelineExecutionError", "enable_monitoring", "pipes", "shm"} <= set(own)
    assert {"Any", "Thread", "os", "tqdm"} <= set(names["foreign"])  # the split is by origin
    missing = [n for n in own if not hasattr(olympipe_typed.olympipe, n)]
    assert not missing, missing


def test_olympipe_names_keep_their_meaning() -> None:
    """A sample of the names beyond Pipeline: each does what olympipe's does."""
    o = olympipe_typed.olympipe
    assert o.Pipeline is Pipeline
    assert issubclass(StageError, o.PipelineExecutionError)
    assert issubclass(o.PipelineExecutionError, RuntimeError)
    with pytest.raises(RuntimeError) as info:  # what olympipe code catches
        Pipeline(["x"]).task(int).wait_for_result(backend="inline")
    assert isinstance(info.value, PipelineExecutionError)
    assert "invalid literal" in info.value.errors[0]

    dag: dict[str, list[str]] = {}
    o.register_father_son(dag, "a", "b")
    o.register_father_son(dag, "a", "c")
    assert dag == {"a": ["b", "c"]}
    assert '"b" -> "a"' in o.make_dot_graph("g", dag)
    assert not o.is_finished_with_errors(dag)
    assert o.is_finished_with_errors({"a": ["error"], "b": ["error"]})

    @o.filter
    def keep(x: int) -> bool:
        return x > 1

    with pytest.raises(TypeError, match="must return bool"):

        @o.filter
        def bad(x: int) -> int:
            return x

    assert o.registry._filters["keep"] is keep
    assert o.source_from([1, 2], name="two") == [1, 2]
    assert o.get_mp_context().get_start_method() in ("fork", "forkserver", "spawn")
    o.enable_monitoring()
    assert o.monitoring.monitoring_enabled()


def test_install_registers_the_module_and_its_submodules(tmp_path: Path) -> None:
    """``install()`` makes ``import olympipe`` and ``from olympipe.x import y`` this engine's."""
    code = (
        "import olympipe_typed.olympipe as o; o.install()\n"
        "import olympipe\n"
        "from olympipe.pipes.cache import CacheEnvelope\n"
        "from olympipe.helpers.server import send_json_response\n"
        "from olympipe.pipes.generic import GenericPipe\n"
        "import olympipe_typed\n"
        "assert olympipe is o and CacheEnvelope is olympipe_typed.CacheEnvelope\n"
        "assert send_json_response is olympipe_typed.send_json_response\n"
        "print(olympipe.Pipeline([1, 2]).task(abs).wait_for_result())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[1, 2]\n"
