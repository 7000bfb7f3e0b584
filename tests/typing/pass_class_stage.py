"""Class stages: ``stage(Cls)(*init_args)`` is a ``Stage`` typed by ``Cls.__call__``.

mypy ignores what a class decorator returns (python/mypy#3135): with ``@stage`` on a
class, ``Tokenizer("v")`` is a ``Tokenizer`` instance for mypy and a ``Stage`` for
pyright. The assertions below are on expressions whose type is the same for both:
``>>`` accepts such an instance by its ``__call__`` signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_type

from olympipe_typed import Pipeline, Stage, flat_stage, source, stage


class Scaler:
    def __init__(self, factor: float, *, offset: float = 0.0) -> None:
        self.factor = factor
        self.offset = offset

    def __call__(self, x: float) -> float:
        return x * self.factor + self.offset

    def close(self) -> None:
        pass


class Splitter:
    def __init__(self, sep: str) -> None:
        self.sep = sep

    def __call__(self, line: str) -> list[str]:
        return line.split(self.sep)


@stage
class Tokenizer:
    def __init__(self, vocab: str) -> None:
        self.vocab = vocab

    def __call__(self, text: str) -> list[int]:
        return [self.vocab.find(c) for c in text]


@stage(workers=1, name="lookup")
class Lookup:
    def __init__(self, table: dict[str, int]) -> None:
        self.table = table

    def __call__(self, key: str) -> int:
        return self.table.get(key, -1)


@stage
def to_words(x: float) -> str:
    return f"{x:.1f}"


@stage
def count(tokens: list[int]) -> int:
    return len(tokens)


scale = stage(Scaler)
assert_type(scale(2.0), Stage[float, float])
assert_type(scale(2.0, offset=1.0), Stage[float, float])
assert_type(stage(Scaler)(3), Stage[float, float])
assert_type(stage(workers=1)(Scaler)(2.0), Stage[float, float])
assert_type(flat_stage(Splitter)(","), Stage[str, str, Iterable[str]])
assert_type(flat_stage(workers=1)(Splitter)(","), Stage[str, str, Iterable[str]])
assert_type(scale(2.0) >> to_words, Stage[float, str])
assert_type(scale(2.0) >> scale(0.5), Stage[float, float])
assert_type(scale(2.0) | to_words, Stage[float, float | str])
# A decorated class instance on the right of ``>>`` (an instance for mypy, a Stage for pyright).
assert_type(to_words >> Tokenizer("abc"), Stage[float, list[int]])
assert_type(to_words >> Tokenizer("abc") >> count, Stage[float, int])
assert_type(to_words >> Lookup({"a": 1}), Stage[float, int])


def check() -> None:
    """Class stages inside pipelines, and called directly (built, never run)."""
    assert_type(source([1.0, 2.0]) >> scale(2.0), Pipeline[float])
    assert_type(source(range(3)) >> scale(2.0) >> to_words, Pipeline[str])
    assert_type(source(["a,b"]) >> flat_stage(Splitter)(","), Pipeline[str])
    assert_type(source(["abc"]) >> Tokenizer("abc"), Pipeline[list[int]])
    assert_type(source(["abc"]) >> Tokenizer("abc") >> count, Pipeline[int])
    assert_type(source(["abc"]) >> Lookup({"a": 1}) >> scale(0.5), Pipeline[float])
    # Calling a class stage calls the instance's __call__ (the same type in both views).
    assert_type(Tokenizer("abc")("cab"), list[int])
    assert_type(scale(2.0)(1.5), float)
