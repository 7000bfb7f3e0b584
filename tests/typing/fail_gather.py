"""Gathered flows carry the union of their item types."""

from __future__ import annotations

from olympipe_typed import Pipeline, source, stage


@stage
def square(x: int) -> int:
    return x * x


WIRING: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["gather union into a narrow stage"] = (source([1]) | source(["a"])) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["fluent gather into narrow"] = Pipeline([1]).gather(Pipeline(["a"])) >> square  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["gather takes pipelines"] = Pipeline([1]).gather([2])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def gathered_results(p: Pipeline[int], q: Pipeline[str]) -> list[int]:
    """The gathered results are int | str, not int."""
    return (p | q).run()  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
