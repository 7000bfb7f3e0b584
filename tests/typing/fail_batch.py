"""Mistakes with ``batch``: after a batch, items are lists."""

from __future__ import annotations

from olympipe_typed import Pipeline, batch, source, stage


@stage
def square(x: int) -> int:
    return x * x


@stage
def total(xs: list[int]) -> int:
    return sum(xs)


@stage
def joined(xs: list[str]) -> str:
    return "".join(xs)


WIRING: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["int stage after a batch"] = source([1]) >> batch(2) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["batch needs a list-taking stage"] = batch(2) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["list of str stage after a batch of int"] = source([1]) >> batch(2) >> joined  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["batch composite fed the wrong items"] = source(["a"]) >> (batch(2) >> total)  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["stage >> batch >> int stage"] = square >> batch(2) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["batch >> batch"] = batch(2) >> batch(2)  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["batch size is an int"] = batch("2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["fluent batch then an int stage"] = Pipeline([1]).batch(2) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["temporal batch then an int stage"] = Pipeline([1]).temporal_batch(1.0) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
