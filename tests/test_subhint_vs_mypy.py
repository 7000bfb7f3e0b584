"""The run-time wiring check against mypy's own verdicts on generated pairs of hints.

Pairs of hints are generated with a fixed seed from a grammar of builtins, the numeric
tower, classes, an ABC, a protocol, a TypedDict, a dataclass, a NamedTuple, unions,
literals and the stdlib containers, nested. One program holds every pair as a function
returning its parameter (``def c(x: P) -> E: return x``); mypy checks it once, and a
pair mypy accepts must fit at run time. The check must also keep rejecting: most of
what mypy rejects is rejected at run time too.
"""

from __future__ import annotations

import random
import re
import textwrap
from typing import TYPE_CHECKING

import pytest
from mypy import api as mypy_api

from olympipe_typed._hints import fits

if TYPE_CHECKING:
    from pathlib import Path

PAIRS = 1000
SEED = 20
# Of the pairs mypy rejects, the share the run-time check must reject too.
MIN_REJECTED_SHARE = 0.95

PRELUDE = textwrap.dedent(
    """\
    from __future__ import annotations

    from abc import ABC, abstractmethod
    from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
    from collections.abc import Set as AbstractSet
    from dataclasses import dataclass
    from typing import Any, Literal, NamedTuple, Protocol, TypedDict


    class Base: ...


    class Derived(Base): ...


    class Other: ...


    class Shape(ABC):
        @abstractmethod
        def area(self) -> float: ...


    class Square(Shape):
        def area(self) -> float:
            return 1.0


    class Sized2(Protocol):
        def size(self) -> int: ...


    class HasSize:
        def size(self) -> int:
            return 0


    class Row(TypedDict):
        id: int


    class RowPlus(TypedDict):
        id: int
        text: str


    @dataclass
    class Point:
        x: float


    class Span(NamedTuple):
        start: int
        end: int
    """
)

ATOMS = (
    "int",
    "float",
    "complex",
    "bool",
    "str",
    "bytes",
    "object",
    "None",
    "Any",
    "Base",
    "Derived",
    "Other",
    "Shape",
    "Square",
    "Sized2",
    "HasSize",
    "Row",
    "RowPlus",
    "Point",
    "Span",
    "Literal[1]",
    'Literal["a"]',
)


# Forms with one or two slots ({0}, {1}) for nested hints.
FORMS = (
    "list[{0}]",
    "Sequence[{0}]",
    "Iterable[{0}]",
    "set[{0}]",
    "frozenset[{0}]",
    "AbstractSet[{0}]",
    "tuple[{0}, {1}]",
    "tuple[{0}, ...]",
    "dict[str, {0}]",
    "Mapping[str, {0}]",
    "MutableMapping[str, {0}]",
    "{0} | {1}",
    "{0} | None",
    "Callable[[{0}], {1}]",
    "type[int]",
    "type[float]",
    "type[Base]",
    "type[Derived]",
    "type[Shape]",
    "type[Square]",
)


def _hint(rng: random.Random, depth: int) -> str:
    """A random hint, nested at most ``depth`` levels."""
    if depth == 0 or rng.random() < 0.4:
        return rng.choice(ATOMS)
    return rng.choice(FORMS).format(_hint(rng, depth - 1), _hint(rng, depth - 1))


def _related(rng: random.Random, hint: str) -> str:
    """A hint close to ``hint`` (a few atoms swapped), so that many pairs are near misses."""
    swaps = {
        "int": ("float", "bool", "complex", "str"),
        "float": ("int", "complex"),
        "Derived": ("Base", "Other"),
        "Base": ("Derived", "object"),
        "Square": ("Shape",),
        "HasSize": ("Sized2",),
        "Span": ("tuple[int, int]", "tuple[int, ...]"),
        "list": ("Sequence", "Iterable"),
        "dict": ("Mapping",),
        "Row": ("RowPlus", "Mapping[str, object]"),
    }

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        options = swaps.get(word)
        return rng.choice(options) if options and rng.random() < 0.5 else word

    return re.sub(r"[A-Za-z_]+", swap, hint)


def _namespace() -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(PRELUDE.replace("from __future__ import annotations\n", ""), namespace)
    return namespace


def _evaluates(hint: str, namespace: dict[str, object]) -> bool:
    try:
        eval(hint, namespace)
    except TypeError:  # None | None: a valid annotation, not a valid expression
        return False
    return True


def _pairs() -> list[tuple[str, str]]:
    rng = random.Random(SEED)
    namespace = _namespace()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < PAIRS:
        produced = _hint(rng, 2)
        expected = _related(rng, produced) if rng.random() < 0.7 else _hint(rng, 2)
        if _evaluates(produced, namespace) and _evaluates(expected, namespace):
            pairs.append((produced, expected))
    return pairs


def _mypy_rejections(pairs: list[tuple[str, str]], directory: Path) -> set[int]:
    """The indexes of the pairs mypy rejects."""
    lines = PRELUDE.splitlines()
    where: dict[int, int] = {}
    for index, (produced, expected) in enumerate(pairs):
        lines.append(f"def c{index}(x: {produced}) -> {expected}:")
        lines.append("    return x")
        where[len(lines)] = index
    program = directory / "pairs.py"
    program.write_text("\n".join(lines) + "\n")
    # mypy's defaults, not the repo's mypy.ini: the question is assignability, not strictness
    # (--strict would also reject returning an Any).
    config = directory / "mypy.ini"
    config.write_text("[mypy]\n")
    stdout, stderr, _status = mypy_api.run(
        [
            "--config-file",
            str(config),
            "--no-error-summary",
            "--no-pretty",
            "--show-error-codes",
            "--python-version",
            "3.11",
            "--cache-dir",
            str(directory / "cache"),
            str(program),
        ]
    )
    rejected: set[int] = set()
    for line in stdout.splitlines():
        match = re.match(r"^.+?:(\d+): error: ", line)
        if match is None:
            continue
        number = int(match.group(1))
        assert number in where, f"mypy rejects the prelude or a signature:\n{line}\n{stderr}"
        rejected.add(where[number])
    return rejected


def _runtime_hints(pairs: list[tuple[str, str]]) -> list[tuple[object, object]]:
    namespace = _namespace()
    return [(eval(p, namespace), eval(e, namespace)) for p, e in pairs]


@pytest.mark.timeout(120)
def test_subhint_accepts_every_pair_mypy_accepts(tmp_path: Path) -> None:
    """fits() never rejects a pair of hints mypy accepts, and rejects most of the rest."""
    pairs = _pairs()
    rejected = _mypy_rejections(pairs, tmp_path)
    hints = _runtime_hints(pairs)
    false_alarms = [
        f"{p} -> {e}"
        for index, ((p, e), (rp, re_)) in enumerate(zip(pairs, hints, strict=True))
        if index not in rejected and not fits(rp, re_)
    ]
    assert false_alarms == [], "mypy accepts what the run-time check rejects"
    # Enough of both verdicts for the comparison to mean something.
    assert PAIRS * 0.2 <= len(rejected) <= PAIRS * 0.8, len(rejected)
    caught = sum(1 for index in rejected if not fits(*hints[index]))
    assert caught >= MIN_REJECTED_SHARE * len(rejected), (caught, len(rejected))
