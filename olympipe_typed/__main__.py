"""``python -m olympipe_typed``: the installed version, and where the package was loaded from.

Run with ``--version`` to print the version alone, as a script that checks it wants.
"""

from __future__ import annotations

import argparse
import sys

import olympipe_typed


def main(argv: list[str] | None = None) -> int:
    """Print what was asked for; 0 on success."""
    parser = argparse.ArgumentParser(
        prog="python -m olympipe_typed",
        description="Typed, multi-process data pipelines. Prints what is installed.",
    )
    parser.add_argument("--version", action="version", version=olympipe_typed.__version__)
    parser.parse_args(argv)
    where = olympipe_typed.__path__[0]
    print(f"olympipe_typed {olympipe_typed.__version__} ({where}, Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
