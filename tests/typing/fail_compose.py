"""Wiring mistakes with ``>>`` and ``|`` between pipelines and stages: both checkers reject each."""

from __future__ import annotations

from olympipe_typed import Pipeline, source, stage


@stage
def square(x: int) -> int:
    return x * x


@stage
def to_str(x: int) -> str:
    return str(x)


@stage
def upper(s: str) -> str:
    return s.upper()


WIRING: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["str items into an int stage"] = source(["a"]) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["stage >> stage mismatch"] = to_str >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["mismatch after a composite"] = (square >> to_str) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["composite mismatch in a pipeline"] = source([1]) >> (square >> to_str) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["fan-out union into a narrow stage"] = (square | to_str) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["fan-out branches with different inputs"] = square | upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["pipeline | stage"] = source([1]) | square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["a string is not a stage"] = source([1]) >> "upper"  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["fluent pipeline into a wrong stage"] = Pipeline([1]).task(str) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["debug keeps the item type"] = Pipeline([1]).debug() >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]


def wrong_pipeline_type() -> Pipeline[str]:
    """Declared as a pipeline of str, built as a pipeline of int."""
    return source([1]) >> square  # type: ignore[operator]  # pyright: ignore[reportReturnType]


def wrong_direct_call() -> str:
    """Calling a stage directly is typed by its function."""
    square("3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    return square(3)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
