"""A stage library as a team would share it; pass_library_*.py and fail_library.py import it.

It holds the patterns of issue 20: generic functions and classes, factories returning
stages or composites, protocol, ABC, TypedDict, dataclass and NamedTuple items, an
Optional output, Sequence/Mapping inputs, partial application, bound methods, and
stages whose output is itself callable.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypedDict, TypeVar, assert_type

from typing_extensions import TypeIs

from olympipe_typed import Stage, filter_stage, flat_stage, partial_stage, stage

T = TypeVar("T")
B = TypeVar("B")


# -- generic functions: shared undecorated, specialised where they are used --


def identity(x: T) -> T:
    return x


def pair(x: T) -> tuple[T, T]:
    return (x, x)


def dedupe(xs: list[T]) -> list[T]:
    return list(dict.fromkeys(xs))


identity_int: Stage[int, int] = stage(identity)
pair_str: Stage[str, tuple[str, str]] = stage(workers=2)(pair)
dedupe_str: Stage[list[str], list[str]] = stage(dedupe)


def present(kind: type[T]) -> Stage[T | None, T, bool]:
    """A filter that drops ``None``: a generic TypeIs predicate made inside a factory."""

    def is_present(x: T | None) -> TypeIs[T]:
        return x is not None

    return filter_stage(name=f"present_{kind.__name__}")(is_present)


class Echo(Generic[T]):
    """A generic class stage: the type parameter on the class, specialised at use."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, x: T) -> T:
        return x


# -- item types --


class Named(Protocol):
    @property
    def name(self) -> str: ...


class Shape(ABC):
    @abstractmethod
    def area(self) -> float: ...


class Square(Shape):
    def __init__(self, side: float) -> None:
        self.side = side

    def area(self) -> float:
        return self.side**2


class Row(TypedDict):
    id: int
    text: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float


class Span(NamedTuple):
    start: int
    end: int


class User:
    def __init__(self, name: str) -> None:
        self.name = name


@stage
def greet(x: Named) -> str:
    return f"hello {x.name}"


@stage
def area(s: Shape) -> float:
    return s.area()


@stage
def row_text(r: Row) -> str:
    return r["text"]


@stage
def norm(p: Point) -> float:
    return math.hypot(p.x, p.y)


@stage
def length(span: tuple[int, int]) -> int:
    return span[1] - span[0]


@stage
def to_span(x: int) -> Span:
    return Span(x, x + 2)


@stage
def parse_int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


@stage
def mean(xs: Sequence[float]) -> float:
    return sum(xs) / max(len(xs), 1)


@stage
def total(m: Mapping[str, float]) -> float:
    return sum(m.values())


@stage
def times_2(x: int) -> int:
    return x * 2


@stage
def strip(s: str) -> str:
    return s.strip()


@flat_stage
def words(line: str) -> list[str]:
    return line.split()


# -- factories --


def scaler(factor: float) -> Stage[float, float]:
    """A factory returning a stage."""

    def scale(x: float) -> float:
        return x * factor

    return stage(name=f"scale_{factor}")(scale)


def cleaned(then: Stage[str, B, object]) -> Stage[str, B]:
    """A factory returning a composite: strip, then any stage that takes text."""
    return strip >> then


def scale(x: float, factor: float, offset: float = 0.0) -> float:
    return x * factor + offset


double: Stage[float, float] = partial_stage(scale, factor=2.0)


# -- bound methods --


class Tokenizer:
    def __init__(self, sep: str) -> None:
        self.sep = sep

    def split(self, text: str) -> list[str]:
        return text.split(self.sep)

    def first(self, text: str) -> str:
        return text.split(self.sep)[0]


comma = Tokenizer(",")
comma_split = flat_stage(comma.split)
comma_first = stage(comma.first)


# -- stages whose output is itself callable --


class Model:
    def __call__(self, x: float) -> float:
        return x


@stage
def make_adder(n: int) -> Callable[[int], int]:
    def add(x: int) -> int:
        return x + n

    return add


@stage
def load_model(path: str) -> Model:
    return Model()


assert_type(identity_int, Stage[int, int])
assert_type(present(int), Stage[int | None, int, bool])
assert_type(stage(Echo[int])("> "), Stage[int, int])
assert_type(double, Stage[float, float])
assert_type(partial_stage(scale, 2.0, offset=1.0), Stage[float, float])
assert_type(comma_split, Stage[str, str, list[str]])
assert_type(comma_first, Stage[str, str])
assert_type(make_adder, Stage[int, Callable[[int], int]])
assert_type(load_model, Stage[str, Model])
assert_type(cleaned(words), Stage[str, str])
assert_type(scaler(0.5), Stage[float, float])
