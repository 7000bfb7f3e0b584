"""``cached_task``: keys that cover what decides a result, and a cache folder that cannot run code."""

from __future__ import annotations

import os
import pickle
import threading
from math import log1p, sqrt
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from olympipe_typed import Pipeline, StageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from olympipe_typed._pipeline import Backend

R = TypeVar("R")

ITEMS = [0, 1, 2, 3]

# Each test runs real pipelines: on worker processes, and in the caller's thread.
backends = pytest.mark.parametrize("backend", ["process", "inline"])


def run_cached(
    fn: Callable[[int], R], cache_dir: Path, backend: Backend, cache_key: str | None = None
) -> list[R]:
    """``fn`` over ITEMS through ``cached_task``, unwrapped."""
    p = Pipeline(ITEMS)
    cached = (
        p.cached_task(fn, cache_dir)
        if cache_key is None
        else p.cached_task(fn, cache_dir, cache_key=cache_key)
    )
    return cached.uncache().run(backend=backend)


def make_scaler(k: int) -> Callable[[int], int]:
    def scale(x: int) -> int:
        return x * k

    return scale


# Same bytecode, constants and argument names: they differ only in the global they call.
def use_sqrt(x: float) -> float:
    return sqrt(x)


def use_log1p(x: float) -> float:
    return log1p(x)


OFFSET = 1


def add_offset(x: int) -> int:
    return x + OFFSET


def square(x: int) -> int:
    return x * x


def as_text(x: int) -> str:
    return str(x)


def as_number(x: int) -> int:
    return x


LOCK = threading.Lock()


def locked_square(x: int) -> int:
    with LOCK:
        return x * x


class Plant:
    """A pickle that creates ``marker`` when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[Path], None], tuple[Path]]:
        return (Path.touch, (self.marker,))


def entries(cache_dir: Path) -> list[Path]:
    """The cache's entry files, after a first run wrote one per item."""
    found = sorted(cache_dir.rglob("*.pkl"))
    assert len(found) == len(ITEMS), found
    return found


@pytest.mark.timeout(60)
@backends
def test_issue_22_closures_get_their_own_results(tmp_path: Path, backend: Backend) -> None:
    """make_scaler(3) does not get the results make_scaler(2) cached: closure values are keyed."""
    assert run_cached(make_scaler(2), tmp_path, backend) == [0, 2, 4, 6]
    assert run_cached(make_scaler(3), tmp_path, backend) == [0, 3, 6, 9]


@pytest.mark.timeout(60)
@backends
def test_issue_22_same_bytecode_other_global(tmp_path: Path, backend: Backend) -> None:
    """Two functions with the same bytecode calling different globals get their own results."""
    assert run_cached(use_sqrt, tmp_path, backend) == [sqrt(x) for x in ITEMS]
    assert run_cached(use_log1p, tmp_path, backend) == [log1p(x) for x in ITEMS]


@pytest.mark.timeout(60)
@backends
def test_issue_22_changed_global_is_recomputed(
    tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a global the function reads changes, its results are computed again."""
    assert run_cached(add_offset, tmp_path, backend) == [1, 2, 3, 4]
    monkeypatch.setitem(add_offset.__globals__, "OFFSET", 10)
    assert run_cached(add_offset, tmp_path, backend) == [10, 11, 12, 13]


@pytest.mark.timeout(60)
@backends
def test_issue_22_truncated_entry_is_recomputed(tmp_path: Path, backend: Backend) -> None:
    """Truncated entries are misses: recomputed and written again whole."""
    assert run_cached(square, tmp_path, backend) == [0, 1, 4, 9]
    written = {path: path.read_bytes() for path in entries(tmp_path)}
    for path, data in written.items():
        path.write_bytes(data[: len(data) // 2])
    assert run_cached(square, tmp_path, backend) == [0, 1, 4, 9]
    assert {path: path.read_bytes() for path in written} == written


@pytest.mark.timeout(60)
@backends
def test_issue_22_garbage_entry_is_recomputed(tmp_path: Path, backend: Backend) -> None:
    """Entries holding garbage are misses: recomputed and written again."""
    assert run_cached(square, tmp_path, backend) == [0, 1, 4, 9]
    written = {path: path.read_bytes() for path in entries(tmp_path)}
    for path in written:
        path.write_bytes(b"not a cache entry\n" * 3)
    assert run_cached(square, tmp_path, backend) == [0, 1, 4, 9]
    assert {path: path.read_bytes() for path in written} == written


@pytest.mark.timeout(60)
@backends
def test_issue_22_planted_pickle_is_never_loaded(tmp_path: Path, backend: Backend) -> None:
    """A pickle planted in place of an entry is not unpickled (its code does not run)."""
    cache_dir = tmp_path / "cache"
    marker = tmp_path / "planted-pickle-ran"
    assert run_cached(square, cache_dir, backend) == [0, 1, 4, 9]
    for path in entries(cache_dir):
        path.write_bytes(pickle.dumps(Plant(marker)))
    assert run_cached(square, cache_dir, backend) == [0, 1, 4, 9]
    assert not marker.exists()


@pytest.mark.timeout(60)
@backends
def test_issue_22_entry_of_wrong_type_is_recomputed(tmp_path: Path, backend: Backend) -> None:
    """A stored result that does not match the return annotation is a miss (cache_key reused)."""
    assert run_cached(as_text, tmp_path, backend, cache_key="convert") == ["0", "1", "2", "3"]
    assert run_cached(as_number, tmp_path, backend, cache_key="convert") == [0, 1, 2, 3]


def test_issue_22_unpicklable_global_needs_a_cache_key(tmp_path: Path) -> None:
    """A global that cannot be pickled is refused by name; with cache_key, the task is cached."""
    with pytest.raises(TypeError, match=r"global 'LOCK' of locked_square.*cache_key"):
        Pipeline(ITEMS).cached_task(locked_square, tmp_path)
    assert run_cached(locked_square, tmp_path, "inline", cache_key="v1") == [0, 1, 4, 9]


@pytest.mark.timeout(60)
@backends
def test_issue_22_planted_entry_with_a_forged_signature_is_never_loaded(
    tmp_path: Path, backend: Backend
) -> None:
    """An entry with the right header but a signature made without the key is not unpickled."""
    from olympipe_typed._cache import _MAC_SIZE, _MAGIC

    cache_dir = tmp_path / "cache"
    marker = tmp_path / "planted-pickle-ran"
    assert run_cached(square, cache_dir, backend) == [0, 1, 4, 9]
    for path in entries(cache_dir):
        path.write_bytes(_MAGIC + b"\0" * _MAC_SIZE + pickle.dumps(Plant(marker)))
    assert run_cached(square, cache_dir, backend) == [0, 1, 4, 9]
    assert not marker.exists()


@pytest.mark.timeout(60)
def test_issue_22_planted_fifo_or_link_is_a_miss(tmp_path: Path) -> None:
    """A FIFO or a link planted in place of an entry is a miss: the run neither blocks nor
    reads what the link points at."""
    cache_dir = tmp_path / "cache"
    assert run_cached(square, cache_dir, "inline") == [0, 1, 4, 9]
    first, second, *_ = entries(cache_dir)
    first.unlink()
    os.mkfifo(first)
    second.unlink()
    second.symlink_to("/dev/zero")
    assert run_cached(square, cache_dir, "inline") == [0, 1, 4, 9]


def test_a_key_file_another_worker_is_making_is_read_once_its_second_name_goes(
    tmp_path: Path,
) -> None:
    """A worker that made the key links it from a temporary name, then removes that name: a
    worker reading the key in between waits for it to go, rather than refusing the key (seen
    once in CI, with workers=2 on a cached task)."""
    from olympipe_typed._cache import _load_secret

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    temporary = cache_dir / "tmpkey"
    temporary.write_bytes(os.urandom(32))
    temporary.chmod(0o600)
    os.link(temporary, cache_dir / ".key")
    remover = threading.Timer(0.1, temporary.unlink)
    remover.start()
    try:
        assert _load_secret(str(cache_dir)) == (cache_dir / ".key").read_bytes()
    finally:
        remover.join()


@pytest.mark.parametrize("how", ["readable by others", "hard link", "symbolic link"])
def test_issue_22_a_key_file_others_could_know_is_refused(tmp_path: Path, how: str) -> None:
    """The folder's key file is refused, naming it, when another user could read or have
    written it: a mode other than 0600, a second name, a symbolic link."""
    cache_dir = tmp_path / "cache"
    assert run_cached(square, cache_dir, "inline") == [0, 1, 4, 9]
    key = cache_dir / ".key"
    if how == "readable by others":
        key.chmod(0o644)
    elif how == "hard link":
        os.link(key, tmp_path / "elsewhere")
    else:
        key.rename(tmp_path / "real-key")
        key.symlink_to(tmp_path / "real-key")
    with pytest.raises(StageError, match=r"PermissionError: cache key file .*\.key") as info:
        run_cached(square, cache_dir, "inline")
    assert isinstance(info.value.__cause__, PermissionError)
