"""Results are typed: ``run``, ``run_all`` and the waiting methods cannot be mis-assigned."""

from __future__ import annotations

from olympipe_typed import Pipeline, run_all


def mistakes(ints: Pipeline[int], strs: Pipeline[str]) -> None:
    """Each marked line is one deliberate mistake (type-checked, never called)."""
    one: tuple[list[str]] = run_all(ints)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    labels: list[str] = ints.run()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    first, second = run_all(ints, strs)
    oops: str = first[0]  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    more: list[list[str]] = Pipeline.wait_for_all_results([ints])  # type: ignore[list-item]  # pyright: ignore[reportAssignmentType]
    waited: list[str] = ints.wait_for_result()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(one, labels, second, oops, more, waited)
    run_all([1, 2])  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    run_all(ints, backend="gpu")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    ints.run(backend="processes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def swapped_results(a: Pipeline[int], b: Pipeline[str]) -> None:
    """run_all's results come in the order of its arguments."""
    x: list[str]
    y: list[int]
    x, y = run_all(a, b)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(x, y)


def swapped_return(a: Pipeline[int], b: Pipeline[str]) -> tuple[list[str], list[int]]:
    """The same, as a declared return type."""
    return run_all(a, b)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
