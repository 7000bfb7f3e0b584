"""The fluent methods check their arguments: counts, sizes, durations, paths and functions."""

from __future__ import annotations

from olympipe_typed import Pipeline


def square(x: int) -> int:
    return x * x


def route(x: int) -> tuple[int | None, str | None]:
    return (x, None) if x % 2 == 0 else (None, str(x))


WIRING: dict[str, object] = {}


def mistakes(p: Pipeline[int]) -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["task count is an int"] = p.task(square, count="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["batch size is an int"] = p.batch("2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["keep_incomplete_batch is a bool"] = p.batch(2, keep_incomplete_batch="no")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["temporal_batch takes seconds"] = p.temporal_batch("1s")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["timeout takes seconds"] = p.timeout("1s")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["limit takes an int, not a float"] = p.limit(2.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["cache_dir is a path"] = p.cached_task(square, 3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["debug takes no argument"] = p.debug(1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    WIRING["filter with a function that does not return a bool"] = p.filter(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["split with a function that does not return a tuple"] = p.split(square)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["split's n is an int"] = p.split(route, n="2")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    WIRING["gather takes pipelines, not lists"] = p.gather(p, [1])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["wait_for_all_results takes pipelines"] = Pipeline.wait_for_all_results([[1, 2]])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["wait_for_results takes a list of pipelines"] = p.wait_for_results(p)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
