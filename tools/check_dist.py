"""Check the built sdist and wheel against the source tree: every module ships, nothing else.

    python tools/check_dist.py dist/

Fails (exit 1, one line per problem) when a file of ``olympipe_typed/`` (a module, ``py.typed``)
is missing from the wheel or the sdist, when the wheel installs anything but the package (a
top-level ``tests`` or ``examples``), or when the wheel's version is not pyproject.toml's.
"""

from __future__ import annotations

import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "olympipe_typed"


def source_files() -> set[str]:
    """The package's files in the checkout, as paths relative to the root ("olympipe_typed/x.py")."""
    found = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / PACKAGE).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")
    }
    assert f"{PACKAGE}/__init__.py" in found
    return found


def check_wheel(wheel: Path, expected: set[str], version: str) -> list[str]:
    """What is wrong with ``wheel``; empty when nothing is."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    problems = [f"{wheel.name}: missing {name}" for name in sorted(expected - names)]
    dist_info = f"{PACKAGE}-{version}.dist-info/"
    for name in sorted(names - expected):
        if not name.startswith(dist_info):
            problems.append(f"{wheel.name}: installs {name}, which is not the package's")
    if f"{dist_info}METADATA" not in names:
        problems.append(f"{wheel.name}: no {dist_info}METADATA (version {version} expected)")
    return problems


def check_sdist(sdist: Path, expected: set[str], version: str) -> list[str]:
    """What is wrong with ``sdist``; empty when nothing is."""
    top = f"{PACKAGE}-{version}/"
    with tarfile.open(sdist) as tf:
        names = {m.name.removeprefix(top) for m in tf.getmembers() if m.isfile()}
    wanted = expected | {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"}
    return [f"{sdist.name}: missing {name}" for name in sorted(wanted - names)]


def main() -> int:
    dist = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    expected = source_files()
    wheels = sorted(dist.glob(f"{PACKAGE}-{version}-*.whl"))
    sdists = sorted(dist.glob(f"{PACKAGE}-{version}.tar.gz"))
    problems: list[str] = []
    if len(wheels) != 1 or len(sdists) != 1:
        problems.append(f"{dist}: expected one wheel and one sdist of version {version}")
    for wheel in wheels:
        problems += check_wheel(wheel, expected, version)
    for sdist in sdists:
        problems += check_sdist(sdist, expected, version)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{dist}: the wheel and the sdist hold all {len(expected)} files of {PACKAGE}/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
