"""Mistakes with a shared stage library (pass_shared_library.py): both checkers reject each."""

from __future__ import annotations

from functools import partial

from pass_shared_library import (
    Echo,
    Point,
    Row,
    Span,
    Tokenizer,
    area,
    cleaned,
    comma_split,
    dedupe_str,
    double,
    greet,
    identity,
    identity_int,
    length,
    make_adder,
    mean,
    norm,
    pair_str,
    parse_int,
    present,
    row_text,
    scale,
    times_2,
    total,
    words,
)
from typing_extensions import TypeIs

from olympipe_typed import Stage, filter_stage, partial_stage, source, stage


class Image:
    pass


class Nameless:
    pass


@stage
def audit(x: object) -> str:
    return repr(x)


@stage
def encode(img: Image) -> bytes:
    return b""


@stage
def count(s: str) -> int:
    return len(s)


class Click:
    pass


@filter_stage
def is_click(x: object) -> TypeIs[Click]:
    return isinstance(x, Click)


def int_stage(s: Stage[int, int, object]) -> str:
    return s.name


LIB: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    LIB["str into a specialised generic"] = source(["a"]) >> identity_int  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["generic output into a narrower stage"] = pair_str >> times_2  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["list of ints into list[str]"] = source([[1]]) >> dedupe_str  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["present for the wrong type"] = source(["1"]) >> parse_int >> present(str)  # type: ignore[arg-type]  # pyright: ignore[reportOperatorIssue]
    LIB["Optional not narrowed"] = source(["1"]) >> parse_int >> times_2  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["str into a specialised generic class"] = source(["a"]) >> stage(Echo[int])("> ")  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["class-stage init argument"] = stage(Echo[int])(3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    LIB["object without the protocol's member"] = source([Nameless()]) >> greet  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["not a subclass of the ABC"] = source([Nameless()]) >> area  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["plain dict into a TypedDict stage"] = source([{"id": "1"}]) >> row_text  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["tuple into a dataclass stage"] = source([(1.0, 2.0)]) >> norm  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["wrong tuple into a NamedTuple-shaped stage"] = source([(1, "2")]) >> length  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["Span into a Point stage"] = source([Span(1, 2)]) >> norm  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["Sequence of str into Sequence[float]"] = source([["a"]]) >> mean  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["Mapping values of the wrong type"] = source([{"a": "b"}]) >> total  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["partial: wrong argument type"] = partial_stage(scale, factor="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    LIB["partial: unknown keyword"] = partial_stage(scale, fator=2.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    LIB["partial: str items"] = source(["a"]) >> double  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["functools.partial has no item type"] = source([1.0]) >> stage(partial(scale, factor=2.0))  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue, reportDeprecated]
    LIB["bound method: int items"] = source([1]) >> comma_split  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["bound method with the wrong item type"] = source([1]) >> stage(Tokenizer(",").first)  # type: ignore[arg-type, operator]  # pyright: ignore[reportOperatorIssue]
    LIB["factory: composite after a non-text stage"] = cleaned(times_2)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    LIB["a callable output is an item"] = source([1]) >> make_adder >> times_2  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["three-way fan-out with a foreign input"] = audit | encode | count  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["fan-out union into a narrow stage"] = (audit | encode) >> count  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["fan-out, wider input on the left, wrong items"] = source([1]) >> (audit | encode)  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["flat stage direct call is a list"] = words("a b") + "c"  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["filter direct call is a bool"] = is_click(Click()).upper()  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    LIB["a flat stage is not a map-form Stage[A, B]"] = map_form(words)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    LIB["helper for int stages given a text stage"] = int_stage(count)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def map_form(s: Stage[str, str]) -> str:
    return s.name


def wrong_span() -> Stage[int, Span]:
    return stage(length)  # type: ignore[arg-type]  # pyright: ignore[reportReturnType]


def wrong_identity() -> Stage[int, str]:
    return stage(identity)  # type: ignore[arg-type]  # pyright: ignore[reportReturnType]


__all__ = ["Point", "Row"]
