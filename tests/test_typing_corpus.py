"""The static-typing corpus in tests/typing: pass_*.py must type-check, fail_*.py must not.

Each mistake in a fail_*.py file is one line carrying both a mypy ignore with its error
code and a pyright ignore with its rule. The main mypy and basedpyright runs fail when
an ignore is unused, so they prove each ignore is needed; these tests add the other
half: with every ignore stripped, each checker reports an error on every marked line
and nowhere else. The stripped copies live in a temporary directory outside the repo
(the repo's mypy.ini and pyproject.toml are passed explicitly), so the main runs never
see them, and the directory is removed when the module's tests end. Corpus files may import
each other (pass_shared_library.py is a stage library the others use), so basedpyright gets
a config that extends the repo's and adds the copy's directory to its import paths.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import pytest
from mypy import api as mypy_api

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "typing"
MYPY_IGNORE = re.compile(r"\s*# type: ignore\[[^\]]*\]")
PYRIGHT_IGNORE = re.compile(r"\s*# pyright: ignore\[[^\]]*\]")
MYPY_ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?:\d+:)? error: ")
MIN_PASS_FILES = 14
MIN_FAIL_LINES = 130

# A file name and a 1-based line number.
Location = tuple[str, int]


class _Position(TypedDict):
    line: int


class _Range(TypedDict):
    start: _Position


class _Diagnostic(TypedDict):
    file: str
    severity: str
    range: _Range


class _PyrightReport(TypedDict):
    generalDiagnostics: list[_Diagnostic]


@dataclass(frozen=True)
class StrippedCorpus:
    """A copy of the corpus with every ignore comment removed from the fail files."""

    directory: Path
    marked: frozenset[Location]
    fail_files: frozenset[str]
    pass_files: frozenset[str]


def _pass_files() -> list[Path]:
    return sorted(CORPUS.glob("pass_*.py"))


def _fail_files() -> list[Path]:
    return sorted(CORPUS.glob("fail_*.py"))


def _marked_lines() -> frozenset[Location]:
    """The lines of the fail files that carry both a mypy and a pyright ignore."""
    return frozenset(
        (path.name, number)
        for path in _fail_files()
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if MYPY_IGNORE.search(text) and PYRIGHT_IGNORE.search(text)
    )


def _half_marked_lines() -> list[str]:
    """Lines of the fail files that carry only one of the two ignores."""
    return [
        f"{path.name}:{number}: {text.strip()}"
        for path in _fail_files()
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if bool(MYPY_IGNORE.search(text)) != bool(PYRIGHT_IGNORE.search(text))
    ]


def _strip(text: str) -> str:
    lines = [PYRIGHT_IGNORE.sub("", MYPY_IGNORE.sub("", line)) for line in text.splitlines()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def stripped() -> Iterator[StrippedCorpus]:
    """The corpus copied to a temporary directory, fail files stripped of their ignores."""
    directory = Path(tempfile.mkdtemp(prefix="olympipe_typing_corpus_"))
    try:
        for path in _fail_files():
            (directory / path.name).write_text(_strip(path.read_text()))
        for path in _pass_files():
            shutil.copyfile(path, directory / path.name)
        yield StrippedCorpus(
            directory=directory,
            marked=_marked_lines(),
            fail_files=frozenset(p.name for p in _fail_files()),
            pass_files=frozenset(p.name for p in _pass_files()),
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _describe(locations: set[Location]) -> str:
    return ", ".join(f"{name}:{line}" for name, line in sorted(locations))


def _assert_errors_match(checker: str, reported: set[Location], corpus: StrippedCorpus) -> None:
    in_pass_files = {loc for loc in reported if loc[0] in corpus.pass_files}
    assert not in_pass_files, f"{checker} rejects pass files at {_describe(in_pass_files)}"
    missed = set(corpus.marked) - reported
    assert not missed, f"{checker} no longer catches the mistakes at {_describe(missed)}"
    unmarked = {loc for loc in reported if loc[0] in corpus.fail_files} - corpus.marked
    assert not unmarked, f"{checker} reports errors on unmarked lines {_describe(unmarked)}"


def _pyright_config(directory: Path) -> Path:
    """A basedpyright config for the stripped copy: the repo's, plus the copy as an import root."""
    config = directory / "pyrightconfig.json"
    settings = {
        "extends": str(ROOT / "pyproject.toml"),
        # The checkout first, as when the repo's pyproject.toml is the project.
        "extraPaths": [str(ROOT), str(directory)],
    }
    config.write_text(json.dumps(settings))
    return config


def _basedpyright_command() -> list[str]:
    executable = Path(sys.executable).with_name("basedpyright")
    if executable.exists():
        return [str(executable)]
    return [sys.executable, "-m", "basedpyright"]


@pytest.mark.timeout(300)
def test_corpus_has_enough_cases() -> None:
    """The corpus has at least 14 pass files and 130 doubly-marked mistakes, none half-marked."""
    assert len(_pass_files()) >= MIN_PASS_FILES, [p.name for p in _pass_files()]
    assert len(_marked_lines()) >= MIN_FAIL_LINES, _describe(set(_marked_lines()))
    assert _half_marked_lines() == []


@pytest.mark.timeout(300)
def test_corpus_stripped_copy_has_no_ignores(stripped: StrippedCorpus) -> None:
    """The stripped fail files keep their lines but lose every ignore comment."""
    for name in stripped.fail_files:
        original = (CORPUS / name).read_text().splitlines()
        copy = (stripped.directory / name).read_text()
        assert "# type: ignore" not in copy
        assert "# pyright: ignore" not in copy
        assert len(copy.splitlines()) == len(original)


@pytest.mark.timeout(300)
def test_mypy_reports_every_stripped_mistake(
    stripped: StrippedCorpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mypy, with the repo's mypy.ini, reports an error on exactly the marked lines."""
    # mypy_path in mypy.ini is relative to the working directory.
    monkeypatch.chdir(ROOT)
    stdout, stderr, _status = mypy_api.run(
        [
            "--config-file",
            str(ROOT / "mypy.ini"),
            "--cache-dir",
            str(stripped.directory / ".mypy_cache"),
            "--no-error-summary",
            "--no-pretty",
            str(stripped.directory),
        ]
    )
    reported: set[Location] = set()
    for line in stdout.splitlines():
        match = MYPY_ERROR.match(line)
        if match is None:
            continue
        path = Path(match["path"])
        if path.parent.resolve() == stripped.directory.resolve():
            reported.add((path.name, int(match["line"])))
    assert reported or not stripped.marked, f"mypy reported nothing:\n{stdout}\n{stderr}"
    _assert_errors_match("mypy", reported, stripped)


@pytest.mark.timeout(300)
def test_basedpyright_reports_every_stripped_mistake(stripped: StrippedCorpus) -> None:
    """basedpyright, with the repo's pyproject.toml, reports an error on exactly the marked lines."""
    completed = subprocess.run(
        [
            *_basedpyright_command(),
            "--outputjson",
            # The packages of this interpreter (the wheel's test venv, say), not of whatever
            # `python` comes first on PATH.
            "--pythonpath",
            sys.executable,
            "--project",
            str(_pyright_config(stripped.directory)),
            str(stripped.directory),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report: _PyrightReport = json.loads(completed.stdout)
    reported: set[Location] = set()
    for diagnostic in report["generalDiagnostics"]:
        path = Path(diagnostic["file"])
        if (
            diagnostic["severity"] == "error"
            and path.parent.resolve() == stripped.directory.resolve()
        ):
            reported.add((path.name, diagnostic["range"]["start"]["line"] + 1))
    _assert_errors_match("basedpyright", reported, stripped)
