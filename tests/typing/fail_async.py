"""Mis-wired async stages: both checkers reject each, as for plain functions."""

from __future__ import annotations

from olympipe_typed import filter_stage, flat_stage, source, stage


@stage
async def fetch(url: str) -> bytes:
    return url.encode()


@stage
async def parse(n: int) -> str:
    return str(n)


@flat_stage
async def lines(text: bytes) -> list[str]:
    return text.decode().splitlines()


@filter_stage
async def small(n: int) -> bool:
    return n < 10


class Client:
    async def __call__(self, path: str) -> bytes:
        return path.encode()


LIB: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    LIB["bytes into an int stage"] = fetch >> parse  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["int into an async str stage"] = source([1]) >> fetch  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["str lines into an int filter"] = fetch >> lines >> small  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["async class stage's bytes into int"] = source(["a"]) >> stage(Client)() >> parse  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    LIB["concurrency is a number"] = stage(concurrency="many")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
