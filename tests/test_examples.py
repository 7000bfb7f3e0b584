"""Every example runs as a script and asserts its own result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The image demo takes a minute at its defaults: tests/test_images_demo.py runs it small.
SEPARATE = {"__init__", "images"}
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py") if p.stem not in SEPARATE)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name: str) -> None:
    """``python -m examples.<name>`` exits 0 (each example asserts its results)."""
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_examples_exist() -> None:
    """The quick start and the branching example are there."""
    assert {"quickstart", "branching", "article"} <= set(EXAMPLES)
