"""Using the shared stage library of pass_shared_library.py from another module."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from pass_shared_library import (
    Echo,
    Model,
    Point,
    Row,
    Span,
    Square,
    User,
    area,
    cleaned,
    dedupe,
    dedupe_str,
    double,
    greet,
    identity,
    identity_int,
    length,
    load_model,
    make_adder,
    mean,
    norm,
    pair,
    pair_str,
    parse_int,
    present,
    row_text,
    scaler,
    to_span,
    total,
    words,
)
from typing_extensions import TypeIs

from olympipe_typed import Pipeline, Stage, filter_stage, source, stage


class Image:
    pass


@stage
def audit(x: object) -> str:
    return repr(x)


@stage
def encode(img: Image) -> bytes:
    return b""


@stage
def size(img: Image) -> int:
    return 0


class Click:
    pass


@filter_stage
def is_click(x: object) -> TypeIs[Click]:
    return isinstance(x, Click)


def any_stage(s: Stage[int, int, object]) -> Stage[int, int, object]:
    """A helper that takes any stage from int to int, whatever a direct call returns."""
    return s.options(workers=2)


def check() -> None:
    """Each line is one case the checkers must type precisely (built, never run)."""
    # generic functions, specialised by a declared type or by the pipeline on the left
    assert_type(source([1, 2]) >> identity_int, Pipeline[int])
    assert_type(source(["a"]) >> pair_str, Pipeline[tuple[str, str]])
    assert_type(source([["a", "a"]]) >> dedupe_str, Pipeline[list[str]])
    assert_type(source([1]) >> identity, Pipeline[int])
    assert_type(source([1]) >> pair, Pipeline[tuple[int, int]])
    assert_type(source([[1, 1]]) >> dedupe, Pipeline[list[int]])
    assert_type(identity_int >> pair, Stage[int, tuple[int, int]])
    assert_type(identity_int(3), int)
    # a generic class, specialised
    assert_type(source([1]) >> stage(Echo[int])("> "), Pipeline[int])
    assert_type(stage(Echo[str])("> ")("a"), str)
    # Optional outputs narrowed by a filter
    assert_type(source(["1", "x"]) >> parse_int >> present(int), Pipeline[int])
    assert_type(parse_int >> present(int) >> identity_int, Stage[str, int])
    # protocols, ABCs, TypedDict, dataclass and NamedTuple items
    assert_type(source([User("ann")]) >> greet, Pipeline[str])
    assert_type(source([Square(2.0)]) >> area, Pipeline[float])
    row: Row = {"id": 1, "text": "a"}
    assert_type(source([row]) >> row_text, Pipeline[str])
    assert_type(source([Point(1.0, 2.0)]) >> norm, Pipeline[float])
    assert_type(source([Span(1, 3)]) >> length, Pipeline[int])
    assert_type(to_span >> length, Stage[int, int])
    # Sequence and Mapping are covariant (in the value), and int fits float
    assert_type(source([[1, 2]]) >> mean, Pipeline[float])
    assert_type(source([(1.0, 2.5)]) >> mean, Pipeline[float])
    assert_type(source([{"a": 1}]) >> total, Pipeline[float])
    # partial application, factories
    assert_type(source([1.0]) >> double >> scaler(3.0), Pipeline[float])
    assert_type(source([2]) >> double, Pipeline[float])
    assert_type(source([" a b "]) >> cleaned(words), Pipeline[str])
    # fan-out, both orders, three ways
    assert_type(audit | encode, Stage[Image, str | bytes])
    assert_type(encode | audit, Stage[Image, bytes | str])
    assert_type(audit | encode | size, Stage[Image, str | bytes | int])
    assert_type(encode | size | audit, Stage[Image, bytes | int | str])
    assert_type(source([Image()]) >> (audit | encode | size), Pipeline[str | bytes | int])
    # outputs that are callable are items, not class-stage factories
    assert_type(source([1]) >> make_adder, Pipeline[Callable[[int], int]])
    assert_type(source(["m.bin"]) >> load_model, Pipeline[Model])
    # direct calls return what the function returns
    assert words("a b") == ["a", "b"]
    assert is_click(Click())
    assert_type(words("a b"), list[str])
    assert_type(is_click(Click()), bool)
    assert_type(any_stage(identity_int), Stage[int, int, object])
