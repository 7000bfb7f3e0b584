"""Variance: ``Stage`` is contravariant in its input and covariant in its output; ``Pipeline`` is covariant."""

from __future__ import annotations

from typing import assert_type

from olympipe_typed import Pipeline, Stage, source, stage


class Animal:
    name = "animal"


class Dog(Animal):
    name = "dog"


@stage
def describe(x: object) -> str:
    return repr(x)


@stage
def half(x: float) -> float:
    return x / 2


@stage
def name_of(a: Animal) -> str:
    return a.name


@stage
def make_dog(x: int) -> Dog:
    del x
    return Dog()


@stage
def to_int(s: str) -> int:
    return len(s)


def needs_int_to_str(s: Stage[int, str]) -> Stage[int, str]:
    return s


def needs_int_to_animal(s: Stage[int, Animal]) -> Stage[int, Animal]:
    return s


def needs_int_to_object(s: Stage[int, object]) -> Stage[int, object]:
    return s


def needs_animals(p: Pipeline[Animal]) -> Pipeline[Animal]:
    return p


# Contravariant input: a Stage[object, str] is a Stage[int, str].
assert_type(needs_int_to_str(describe), Stage[int, str])
# Covariant output: a Stage[int, Dog] is a Stage[int, Animal] and a Stage[int, object].
assert_type(needs_int_to_animal(make_dog), Stage[int, Animal])
assert_type(needs_int_to_object(make_dog), Stage[int, object])
# Both at once: a Stage[object, str] is a Stage[int, object].
assert_type(needs_int_to_object(describe), Stage[int, object])
# A composite whose first stage accepts anything keeps the wider input.
assert_type(describe >> to_int, Stage[object, int])
# Subclass outputs flow into a stage taking the base class.
assert_type(make_dog >> name_of, Stage[int, str])
# int outputs flow into a float stage (int is accepted where float is expected).
assert_type(to_int >> half, Stage[str, float])


def check() -> None:
    """Items flow into stages that accept a wider type (built, never run)."""
    assert_type(source([1, 2]) >> half, Pipeline[float])
    assert_type(source(range(3)) >> describe, Pipeline[str])
    assert_type(source([Dog(), Dog()]) >> name_of, Pipeline[str])
    assert_type(source([True, False]) >> half, Pipeline[float])
    assert_type(source(range(3)) >> make_dog >> name_of, Pipeline[str])
    assert_type(source(range(3)) >> make_dog >> describe, Pipeline[str])
    # Pipeline is covariant: a Pipeline[Dog] is a Pipeline[Animal].
    assert_type(needs_animals(source([Dog()])), Pipeline[Animal])
    assert_type(needs_animals(source(range(3)) >> make_dog) >> name_of, Pipeline[str])
    # A Stage[int, str] slot accepts Stage[object, str] inside a pipeline too.
    assert_type(source(range(3)) >> needs_int_to_str(describe), Pipeline[str])
