"""The examples in the package's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import olympipe_typed

MODULES = sorted(
    {"olympipe_typed"}
    | {m.name for m in pkgutil.walk_packages(olympipe_typed.__path__, "olympipe_typed.")}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert failed == 0, f"{failed} docstring example(s) failed in {name} (output above)"


def test_the_examples_are_found() -> None:
    """The parametrization above is not empty: a broken walk would pass trivially."""
    found = sum(
        len(doctest.DocTestFinder().find(importlib.import_module(name))) for name in MODULES
    )
    assert found >= 10
