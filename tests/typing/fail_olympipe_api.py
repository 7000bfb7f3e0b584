"""Mistakes with olympipe 2.2's API beyond the basics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from olympipe_typed.olympipe import GenericPipe, Pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator


def parse(text: str) -> int:
    return int(text)


def to_text(item: str, exc: Exception) -> str:
    return item


def handler_of_ints(item: int, exc: Exception) -> int:
    return item


def collect(item: int, acc: list[int]) -> list[int]:
    return [*acc, item]


def labels(acc: list[str]) -> Iterator[str]:
    return iter(acc)


class Half(GenericPipe[int, float]):
    def _perform_task(self, data: int) -> float:
        return data / 2


WIRING: dict[str, object] = {}


def mistakes(p: Pipeline[str]) -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    numbers: Pipeline[int] = p.task(parse, on_error=to_text)  # type: ignore[arg-type]  # pyright: ignore[reportAssignmentType]
    WIRING["on_error for another item type"] = p.task(parse, on_error=handler_of_ints)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    start: list[int] = []
    WIRING["an emitter of another state"] = numbers.checkpoint(start, collect, labels)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["a step class for other items"] = p.create_pipe(Half)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["create_pipe takes a class"] = p.create_pipe(Half())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["debug_graph is a path"] = p.wait_for_result(3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
