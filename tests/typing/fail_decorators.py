"""The stage decorators check the shape of the function they make a stage from."""

from __future__ import annotations

from olympipe_typed import filter_stage, flat_stage, source


def square(x: int) -> int:
    return x * x


def to_label(x: int) -> str:
    return f"item-{x}"


def count_to(n: int) -> int:
    return n


WIRING: dict[str, object] = {}


@flat_stage  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
def not_iterable(x: int) -> int:
    return x


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["flat_stage on a function not returning an iterable"] = flat_stage(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["filter_stage on a function returning str"] = filter_stage(to_label)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["source of a non-iterable"] = source(1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["source on a function not returning an iterable"] = source(count_to)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["flat stage with options on a non-iterable"] = flat_stage(workers=2)(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["filter stage with options on a non-predicate"] = filter_stage(name="x")(to_label)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
