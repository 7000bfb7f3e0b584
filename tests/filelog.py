"""State that works across processes in tests: lines in a file, not a global list."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def record(path: Path, line: str) -> None:
    """Append one line to ``path`` (O_APPEND: safe from several processes)."""
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{line}\n")


def lines(path: Path) -> list[str]:
    """The lines written by ``record`` so far."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []
