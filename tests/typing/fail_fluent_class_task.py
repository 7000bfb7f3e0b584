"""class_task checks the method and close method against the class, and the items against the method."""

from __future__ import annotations

from olympipe_typed import Pipeline, stage


class Model:
    def __init__(self, path: str) -> None:
        self.path = path

    def predict(self, x: int) -> float:
        return x / 2

    def close(self) -> None:
        pass


class Other:
    def predict(self, x: int) -> float:
        return x / 3

    def close(self) -> None:
        pass


@stage
def upper(s: str) -> str:
    return s.upper()


WIRING: dict[str, object] = {}


def mistakes(p: Pipeline[int]) -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["a method of another class"] = p.class_task(Model, Other.predict)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["another class's close"] = p.class_task(Model, Model.predict, close_method=Other.close)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["count is an int"] = p.class_task(Model, Model.predict, count="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["batches into a method taking one item"] = p.batch(2).class_task(Model, Model.predict)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["float results into a str stage"] = p.class_task(Model, Model.predict) >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["an instance instead of the class"] = p.class_task(Model("m"), Model.predict)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
