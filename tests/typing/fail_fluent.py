"""Mistakes with the olympipe-style fluent methods."""

from __future__ import annotations

from olympipe_typed import Pipeline, stage


def square(x: int) -> int:
    return x * x


def is_even(x: int) -> bool:
    return x % 2 == 0


def to_label(item: int, acc: int) -> str:
    return f"{acc}-{item}"


def route(x: int) -> tuple[int | None, str | None]:
    return (x, None)


@stage
def upper(s: str) -> str:
    return s.upper()


WIRING: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["task with a function of the wrong input type"] = Pipeline(["a"]).task(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["filter with a predicate of the wrong input type"] = Pipeline(["a"]).filter(is_even)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["explode on non-iterable items"] = Pipeline([1]).explode()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    WIRING["explode with a function not returning an iterable"] = Pipeline([1]).explode(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["reduce with a reducer of the wrong signature"] = Pipeline([1]).reduce(0, to_label)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["uncache on a pipeline without envelopes"] = Pipeline([1]).uncache()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    WIRING["limit takes an int"] = Pipeline([1]).limit("3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["wait_and_reduce with a wrong accumulator"] = Pipeline([1]).wait_and_reduce("", square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["cached results are envelopes"] = Pipeline([1]).cached_task(str, "/tmp/c") >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["Pipeline has no options()"] = Pipeline([1]).options(workers=2)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


def split_mistakes() -> None:
    """The branches of ``split`` keep their own types."""
    numbers, labels = Pipeline([1]).split(route)
    WIRING["int branch into a str stage"] = numbers >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["str branch into an int task"] = labels.task(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["three branches from a 2-tuple"] = Pipeline([1]).split(route)[2]  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
