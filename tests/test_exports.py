"""The public namespace: every exported name exists, is shown as ``olympipe_typed.X``, and classes are final."""

from __future__ import annotations

import inspect

import pytest

import olympipe_typed

pytestmark = pytest.mark.timeout(60)

PUBLIC = sorted(olympipe_typed.__all__)


def _public_classes() -> list[type[object]]:
    """The classes among the exported names."""
    return [obj for name in PUBLIC if inspect.isclass(obj := getattr(olympipe_typed, name))]


def _non_exception_classes() -> list[type[object]]:
    """The exported classes that are not exceptions."""
    return [c for c in _public_classes() if not issubclass(c, BaseException)]


@pytest.mark.parametrize("name", PUBLIC)
def test_exports_name_exists_in_package(name: str) -> None:
    """Every name in ``__all__`` is an attribute of the package."""
    assert hasattr(olympipe_typed, name)


@pytest.mark.parametrize("name", PUBLIC)
def test_exports_name_has_package_module(name: str) -> None:
    """Every exported object reports ``olympipe_typed`` as its module, not a private submodule."""
    assert getattr(olympipe_typed, name).__module__ == "olympipe_typed"


def test_exports_all_is_sorted_without_duplicates() -> None:
    """``__all__`` is sorted and lists each name once."""
    names = list(olympipe_typed.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_exports_include_the_documented_api() -> None:
    """``__all__`` holds every name that API.md documents as public."""
    documented = {
        "Pipeline",
        "PipelineError",
        "SourceError",
        "Stage",
        "StageError",
        "StageTypeError",
        "WiringError",
        "WorkerDied",
        "batch",
        "filter_stage",
        "flat_stage",
        "run_all",
        "send_json_response",
        "source",
        "stage",
    }
    assert documented <= set(olympipe_typed.__all__)


@pytest.mark.parametrize("cls", _non_exception_classes(), ids=lambda c: c.__name__)
def test_exports_classes_are_final_unless_exceptions(cls: type[object]) -> None:
    """Every exported class that is not an exception is marked ``@final``."""
    assert getattr(cls, "__final__", False) is True


def test_exports_exceptions_are_not_final() -> None:
    """Exported exception classes stay subclassable (not marked ``@final``)."""
    for cls in _public_classes():
        if issubclass(cls, BaseException):
            assert not getattr(cls, "__final__", False)


def test_exports_exceptions_derive_from_pipeline_error() -> None:
    """Every exported exception class derives from PipelineError."""
    errors = [c for c in _public_classes() if issubclass(c, BaseException)]
    assert errors
    for cls in errors:
        assert issubclass(cls, olympipe_typed.PipelineError)


def test_exports_version_is_a_string() -> None:
    """``__version__`` is a non-empty str."""
    assert isinstance(olympipe_typed.__version__, str)
    assert olympipe_typed.__version__


def test_exports_star_import_gives_all() -> None:
    """``from olympipe_typed import *`` binds exactly the names in ``__all__``."""
    namespace: dict[str, object] = {}
    exec("from olympipe_typed import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == set(olympipe_typed.__all__)
