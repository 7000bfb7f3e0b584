"""Item types survive split, gather, explode, reduce, caching and the waiting methods."""

from __future__ import annotations

from olympipe_typed import Pipeline, run_all, stage


def square(x: int) -> int:
    return x * x


def add(item: int, acc: int) -> int:
    return item + acc


def route(x: int) -> tuple[int | None, str | None]:
    return (x, None) if x % 2 == 0 else (None, str(x))


@stage
def upper(s: str) -> str:
    return s.upper()


@stage
def negate(x: int) -> int:
    return -x


WIRING: dict[str, object] = {}


def mistakes(p: Pipeline[int]) -> None:
    """Each marked line is one deliberate mistake (type-checked, never called)."""
    evens, odds = p.split(route)
    WIRING["gathered int | str items into an int task"] = evens.gather(odds).task(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["exploded ints into a str stage"] = Pipeline([[1, 2]]).explode() >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["window sums into a str stage"] = p.temporal_batch(0.5).task(lambda b: sum(b)) >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["a reducer for another accumulator type"] = p.reduce("", add)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["uncache twice"] = p.cached_task(str, "/tmp/c").uncache().uncache()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    WIRING["filter() keeps the items' type"] = p.task(str).filter() >> negate  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]


def result_mistakes(p: Pipeline[int]) -> None:
    """The same types reach the results."""
    evens, odds = p.split(route)
    branch: Pipeline[str] = evens  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    sums: list[str] = p.reduce(0, add).wait_for_result()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    cached: int = p.cached_task(str, "/tmp/c").wait_for_result()[0].data  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    started: Pipeline[str] = p.start()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    total: str = p.wait_and_reduce(0, add)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    mixed: list[list[int]] = p.wait_for_results([odds])  # type: ignore[list-item]  # pyright: ignore[reportAssignmentType]
    print(branch, sums, cached, started, total, mixed)
    ints: list[str]
    strs: list[int]
    ints, strs = run_all(evens, odds)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(ints, strs)


def unpacking(p: Pipeline[int]) -> None:
    """split gives as many branches as the function's tuple has slots."""
    a, b, _c = p.split(route)  # type: ignore[misc]  # pyright: ignore[reportAssignmentType, reportUnknownVariableType]
    print(a, b)
