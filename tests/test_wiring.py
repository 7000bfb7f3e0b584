"""Conformance tests for wiring checks: WiringError at composition time, and the edges that must be accepted.

This module uses ``from __future__ import annotations``, so every stage below
has string annotations: the checks must resolve them to catch mismatches.
"""

from __future__ import annotations

# Read at run time: the wiring check resolves the string annotations of the stages below.
from collections.abc import Mapping, Sequence  # noqa: TC003
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import pytest
from typing_extensions import TypeIs

from olympipe_typed import (
    Pipeline,
    Stage,
    WiringError,
    batch,
    filter_stage,
    flat_stage,
    source,
    stage,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def _dynamic(fn: Callable[[Any], Any], name: str | None = None) -> Stage[Any, Any]:
    """A stage of ``fn`` the type checkers cannot see through, as in a graph built at run time."""
    return stage(name=name)(fn)


def _hide(s: Stage[Any, Any]) -> Stage[Any, Any]:
    """The same stage, typed so that the type checkers cannot see its item types."""
    return s


def _assert_names(err: WiringError, *parts: str) -> None:
    """Assert that the error message mentions every part."""
    for part in parts:
        assert part in str(err), f"{part!r} not in {str(err)!r}"


class Animal:
    """A base class."""

    def __init__(self, name: str) -> None:
        self.name = name


class Dog(Animal):
    """A subclass."""


@stage
def times_2(x: int) -> int:
    """Double an int."""
    return x * 2


@stage
def to_str(x: int) -> str:
    """An int as text."""
    return str(x)


@stage
def upper(s: str) -> str:
    """Text in capitals."""
    return s.upper()


@stage
def half(x: float) -> float:
    """Half of a number."""
    return x / 2


@stage
def maybe_int(x: int) -> int | None:
    """The int, or None for negative ones."""
    return x if x >= 0 else None


@stage
def describe(x: int | str | None) -> str:
    """Any of int, str or None, as text."""
    return "none" if x is None else f"{type(x).__name__}:{x}"


@flat_stage
def chars(s: str) -> list[str]:
    """The characters of a string."""
    return list(s)


@filter_stage
def is_int(x: int | str) -> TypeIs[int]:
    """Keep ints, narrowing ``int | str`` to ``int``."""
    return isinstance(x, int)


@stage
def make_dog(name: str) -> Dog:
    """A Dog with that name."""
    return Dog(name)


@stage
def animal_name(a: Animal) -> str:
    """The name of any animal."""
    return a.name


def _anything(x: Any) -> Any:
    """Accepts and returns anything."""
    return x


# ``@stage`` on a function returning Any would be typed as a class-stage factory.
anything = _dynamic(_anything)


@stage
def total(xs: list[int]) -> int:
    """The sum of a list of ints."""
    return sum(xs)


def identity(x: T) -> T:
    """A TypeVar-generic function."""
    return x


def first(xs: list[T]) -> T:
    """The first element of a list, generic in the element type."""
    return xs[0]


class Scaler:
    """A class stage taking ints."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        return x * self.factor


# -- rejected at composition time --


def test_wiring_stage_rshift_mismatch_names_both_stages_and_hints() -> None:
    """``int`` stage >> ``str`` stage raises WiringError naming both stages and both hints."""
    with pytest.raises(WiringError) as info:
        _ = times_2 >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue, reportUnknownVariableType]
    _assert_names(info.value, "times_2", "upper", "int", "str")


def test_wiring_pipeline_rshift_mismatch_raises_before_running() -> None:
    """``Pipeline >> Stage`` with mismatched items raises WiringError when composed, not when run."""
    doubled = source(range(3)) >> times_2
    with pytest.raises(WiringError) as info:
        _ = doubled >> upper  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue, reportUnknownVariableType]
    _assert_names(info.value, "times_2", "upper", "int", "str")


def test_wiring_dynamic_stages_mismatch_raises() -> None:
    """Stages the checkers cannot see are still checked by their annotations at composition time."""

    def length(s: str) -> int:
        return len(s)

    def shout(s: str) -> str:
        return s.upper()

    with pytest.raises(WiringError) as info:
        _ = _dynamic(length, "length") >> _dynamic(shout, "shout")
    _assert_names(info.value, "length", "shout", "int", "str")


def test_wiring_fanout_output_union_into_narrow_stage_raises() -> None:
    """A fan-out producing ``int | str`` cannot feed a stage that takes only ``str``."""
    both = _hide(times_2) | _hide(to_str)
    with pytest.raises(WiringError) as info:
        _ = both >> _hide(upper)
    _assert_names(info.value, "upper", "int", "str")


def test_wiring_optional_into_non_optional_raises() -> None:
    """A stage producing ``int | None`` cannot feed a stage that takes ``int``."""
    with pytest.raises(WiringError) as info:
        _ = _hide(maybe_int) >> _hide(times_2)
    _assert_names(info.value, "maybe_int", "times_2", "None", "int")


def test_wiring_flat_stage_element_type_checked() -> None:
    """A flat stage's element type, not its iterable type, is checked against the next stage."""
    with pytest.raises(WiringError) as info:
        _ = _hide(chars) >> _hide(times_2)
    _assert_names(info.value, "chars", "times_2", "str", "int")


def test_wiring_batch_output_is_a_list() -> None:
    """``stage >> batch(n)`` produces lists, which cannot feed a stage taking single items."""
    pairs = _hide(times_2) >> batch(2)
    with pytest.raises(WiringError) as info:
        _ = pairs >> _hide(times_2)
    _assert_names(info.value, "times_2", "list[int]", "int")


def test_wiring_class_stage_mismatch_raises() -> None:
    """A class stage's ``__call__`` annotation is checked like a function's."""
    scale: Stage[Any, Any] = stage(Scaler)(3)
    with pytest.raises(WiringError) as info:
        _ = scale >> _hide(upper)
    _assert_names(info.value, "Scaler", "upper", "int", "str")


def test_wiring_fluent_task_mismatch_raises() -> None:
    """``Pipeline.task(fn)`` checks fn's annotation against the pipeline's items."""

    def shout(s: str) -> str:
        return s.upper()

    doubled: Pipeline[Any] = source(range(3)) >> times_2
    with pytest.raises(WiringError) as info:
        _ = doubled.task(shout)
    _assert_names(info.value, "times_2", "shout", "int", "str")


def test_wiring_fanout_with_disjoint_inputs_raises() -> None:
    """``a | b`` raises WiringError when b cannot take the items a takes."""
    with pytest.raises(WiringError) as info:
        _ = _hide(times_2) | _hide(upper)
    _assert_names(info.value, "times_2", "upper", "int", "str")


def test_wiring_typeis_filter_mismatch_names_narrowed_type() -> None:
    """A TypeIs[int] filter feeding a ``str`` stage raises WiringError naming the narrowed ``int``."""
    with pytest.raises(WiringError) as info:
        _ = _hide(is_int) >> _hide(upper)
    _assert_names(info.value, "is_int", "upper", "str")
    assert "int | str" not in str(info.value)


# -- accepted --


def test_wiring_int_into_float_is_accepted(backend: Backend) -> None:
    """An ``int`` producer may feed a ``float`` consumer, as in PEP 484."""
    assert (source([1, 3]) >> (times_2 >> half)).run(backend=backend) == [1.0, 3.0]


def test_wiring_subclass_into_base_is_accepted(backend: Backend) -> None:
    """A producer of a subclass may feed a consumer of its base class."""
    assert (source(["rex"]) >> make_dog >> animal_name).run(backend=backend) == ["rex"]


def test_wiring_unannotated_stages_are_accepted(backend: Backend) -> None:
    """Unannotated stages fit any neighbour, on either side."""
    unknown = _dynamic(lambda x: x)
    assert isinstance(unknown >> upper, Stage)
    assert (source([3]) >> (times_2 >> unknown >> to_str)).run(backend=backend) == ["6"]


def test_wiring_any_is_accepted(backend: Backend) -> None:
    """``Any`` hints fit any neighbour, on either side."""
    assert isinstance(times_2 >> anything >> upper, Stage)
    assert (source([2]) >> (times_2 >> anything >> to_str)).run(backend=backend) == ["4"]


def test_wiring_typevar_stages_are_accepted(backend: Backend) -> None:
    """TypeVar-generic stages fit any neighbour, also inside a generic container."""
    generic = _dynamic(identity)
    take_first = _dynamic(first)
    pipeline = source(range(5)) >> times_2 >> generic >> batch(2) >> take_first >> times_2
    assert pipeline.run(backend=backend) == [0, 8, 16]


def test_wiring_string_annotations_are_resolved(backend: Backend) -> None:
    """String annotations (``from __future__ import annotations``) are resolved and checked."""
    assert (source([4]) >> (times_2 >> to_str >> upper)).run(backend=backend) == ["8"]
    with pytest.raises(WiringError):
        _ = to_str >> times_2  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue, reportUnknownVariableType]


def test_wiring_optional_into_union_is_accepted(backend: Backend) -> None:
    """An ``int | None`` producer may feed an ``int | str | None`` consumer."""
    pipeline = source([1, -1]) >> (maybe_int >> describe)
    assert pipeline.run(backend=backend) == ["int:1", "none"]


def test_wiring_fanout_union_into_union_is_accepted(backend: Backend) -> None:
    """A fan-out producing ``int | str`` may feed a consumer of ``int | str | None``."""
    pipeline = source([3]) >> ((times_2 | to_str) >> describe)
    assert pipeline.run(backend=backend) == ["int:6", "str:3"]


def test_wiring_gather_union_into_union_is_accepted(backend: Backend) -> None:
    """Gathered ``int`` and ``str`` flows may feed a consumer of ``int | str | None``."""
    gathered = (source([1]) >> times_2) | (source(["a"]) >> upper)
    assert sorted((gathered >> describe).run(backend=backend)) == ["int:2", "str:A"]


def test_wiring_batch_into_list_consumer_is_accepted(backend: Backend) -> None:
    """``batch(n)`` after an ``int`` stage feeds a ``list[int]`` consumer."""
    assert (source(range(5)) >> times_2 >> batch(2) >> total).run(backend=backend) == [2, 10, 8]


def test_wiring_typeis_filter_into_narrowed_consumer_is_accepted(backend: Backend) -> None:
    """A TypeIs[int] filter may feed a stage taking ``int``."""
    data: list[int | str] = [1, "a", 2]
    assert (source(data) >> is_int >> times_2).run(backend=backend) == [2, 4]


def test_wiring_typeis_filter_composite_is_accepted(backend: Backend) -> None:
    """The composite ``is_int >> times_2`` (TypeIs[int] filter, then an int stage) composes and runs."""
    keep_ints_doubled = is_int >> times_2
    data: list[int | str] = [1, "a", 2]
    assert (source(data) >> keep_ints_doubled).run(backend=backend) == [2, 4]


def test_wiring_class_stage_into_matching_stage_is_accepted(backend: Backend) -> None:
    """A class stage taking and giving ``int`` fits ``int`` neighbours."""
    assert (source([1, 2]) >> (times_2 >> stage(Scaler)(5) >> to_str)).run(backend=backend) == [
        "10",
        "20",
    ]


def test_issue_20_compositions_mypy_accepts_are_accepted() -> None:
    """A NamedTuple into a tuple stage, int into float inside Sequence and Mapping: no WiringError."""

    class Span(NamedTuple):
        start: int
        end: int

    def to_span(x: int) -> Span:
        return Span(x, x + 1)

    def width(s: tuple[int, int]) -> int:
        return s[1] - s[0]

    def ints(x: int) -> list[int]:
        return [x]

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs)

    def counts(x: int) -> Mapping[str, int]:
        return {"n": x}

    def total(m: Mapping[str, float]) -> float:
        return sum(m.values())

    assert (source([1]) >> stage(to_span) >> stage(width)).run(backend="inline") == [1]
    assert (source([2]) >> stage(ints) >> stage(mean)).run(backend="inline") == [2.0]
    assert (source([3]) >> stage(counts) >> stage(total)).run(backend="inline") == [3.0]
    with pytest.raises(WiringError):
        _ = stage(ints) >> stage(width)  # type: ignore[arg-type]  # pyright: ignore[reportOperatorIssue, reportUnknownVariableType]
