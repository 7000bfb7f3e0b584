"""Stage options are typed, as decorator keywords and in ``.options(...)``."""

from __future__ import annotations

from olympipe_typed import stage


@stage
def square(x: int) -> int:
    return x * x


def fallback(item: str, error: Exception) -> str:
    del error
    return item


WIRING: dict[str, object] = {}


@stage(workers="x")  # type: ignore[call-overload, untyped-decorator]  # pyright: ignore[reportArgumentType]
def bad_workers(x: int) -> int:
    return x


@stage(on_error="ignore")  # type: ignore[call-overload, untyped-decorator]  # pyright: ignore[reportArgumentType]
def bad_policy(x: int) -> int:
    return x


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["workers is an int, in options()"] = square.options(workers="4")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["workers is an int, in the decorator"] = stage(workers="x")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    WIRING["on_error is 'raise', 'skip' or a callable"] = square.options(on_error="ignore")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["ordered is a bool"] = stage(ordered=None)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    WIRING["unknown option"] = square.options(threads=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    WIRING["options are keyword-only"] = square.options("name")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def _bytes_handler(item: bytes, exc: Exception) -> int:
    return 0


def _text_handler(item: int, exc: Exception) -> str:
    return ""


def on_error_handlers() -> None:
    """An on_error handler takes the stage's item type and returns its output type."""
    WIRING["on_error handler takes the item type"] = square.options(on_error=_bytes_handler)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["on_error handler returns the output type"] = square.options(on_error=_text_handler)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
