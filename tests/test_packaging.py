"""What an installed package gives a user: its version, ``python -m olympipe_typed``, and the
README's "In code" example. Under ``make test`` these run against the installed wheel."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import olympipe_typed

ROOT = Path(__file__).resolve().parent.parent


def test_version_comes_from_the_package_metadata() -> None:
    """``olympipe_typed.__version__`` is the installed distribution's version."""
    assert olympipe_typed.__version__ == version("olympipe_typed")
    assert re.fullmatch(r"\d+\.\d+\.\d+", olympipe_typed.__version__)


def test_other_missing_attributes_still_raise() -> None:
    """The lazy ``__version__`` lookup does not turn typos into values."""
    with pytest.raises(AttributeError, match="sorce"):
        getattr(olympipe_typed, "sorce")  # noqa: B009


def test_changelog_names_this_version() -> None:
    """CHANGELOG.md's newest release is the package's version."""
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases
    assert releases[0] == olympipe_typed.__version__


@pytest.mark.timeout(60)
def test_python_m_olympipe_typed_prints_the_version() -> None:
    """``python -m olympipe_typed --version`` prints the version alone."""
    done = subprocess.run(
        [sys.executable, "-m", "olympipe_typed", "--version"],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    assert done.stdout.strip() == olympipe_typed.__version__


def _readme_in_code() -> str:
    """The README's "In code" example, without the line that shows a type error."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## In code") :]
    block = section[section.index("```python") + len("```python") : section.index("```\n\n")]
    return "\n".join(line for line in block.splitlines() if "# mypy:" not in line)


@pytest.mark.timeout(60)
def test_readme_in_code_example_runs(tmp_path: Path) -> None:
    """The README's "In code" example, run as a script, prints the labels it shows."""
    script = tmp_path / "in_code.py"
    script.write_text(_readme_in_code())
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str([f"item-{2 * x}" for x in range(10)])
