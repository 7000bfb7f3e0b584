"""Class stages: init arguments are checked against ``__init__``, items against ``__call__``."""

from __future__ import annotations

from olympipe_typed import Pipeline, source, stage


class Scaler:
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: float) -> float:
        return x * self.factor


@stage
class Tokenizer:
    def __init__(self, vocab: str) -> None:
        self.vocab = vocab

    def __call__(self, text: str) -> list[int]:
        return [self.vocab.find(c) for c in text]


@stage
def upper(s: str) -> str:
    return s.upper()


WIRING: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["init argument of the wrong type"] = stage(Scaler)("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["missing init argument"] = stage(Scaler)()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    WIRING["unknown init keyword"] = stage(Scaler)(2.0, offset=1.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    WIRING["str items into a float class stage"] = source(["a"]) >> stage(Scaler)(2.0)  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["int items into a decorated class stage"] = source([1]) >> Tokenizer("abc")  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["decorated class init argument of the wrong type"] = Tokenizer(3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["class stage output into a wrong stage"] = stage(Scaler)(2.0) >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
    WIRING["class_task method, wrong item"] = Pipeline(["a"]).class_task(Scaler, Scaler.__call__)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
