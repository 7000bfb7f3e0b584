"""The workloads: their stages, sizes, sources and output checks (systems live in ``systems``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from . import fns

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import numpy as np
    import numpy.typing as npt

Kind = Literal["ints", "arrays", "images"]

ARRAY_BYTES = 4_000_000  # "4 MB" (MB = 10**6 bytes throughout)
WORKLOADS = (
    "identity",
    "cpu",
    "cpu_unbalanced",
    "arrays",
    "startup",
    "memory",
    "images",
    "heavy_tail",
    "periodic_skew",
)
#: The workloads whose stages carry hints (``StageSpec.workers``): the systems that take
#: per-stage hints run them twice, without (``X``) and with them (``X+hints``).
HINTED = frozenset({"cpu_unbalanced", "images", "heavy_tail", "periodic_skew"})
#: CPU-bound workloads of busy loops: their ideal is the total CPU work over the cores.
SYNTHETIC = ("heavy_tail", "periodic_skew")
LIGHT_MS = 0.3  # the light stages around the skewed one


@dataclass(frozen=True)
class StageSpec:
    fn: Callable[[Any], Any]
    # Workers the user would ask for: a hint. None: no hint (a system that needs a number
    # gets 1; olympipe_typed is given none and leaves the choice to its planner).
    workers: int | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    stages: tuple[StageSpec, ...]
    n: int
    kind: Kind
    batch: int  # items per message in the hand-written chain
    offset: int  # output k must be k + offset (ints)
    stream: bool  # consume outputs as a stream (check and drop) rather than as a list

    @property
    def total_workers(self) -> int:
        return sum(s.workers or 1 for s in self.stages)

    def without_hints(self) -> Workload:
        """The same workload with no stage asking for workers."""
        return replace(self, stages=tuple(replace(s, workers=None) for s in self.stages))


def get(name: str, *, quick: bool) -> Workload:
    """The workload ``name`` at full size, or at smoke-run size with ``quick``."""
    ident, burn = StageSpec(fns.ident), StageSpec(fns.burn)
    if name == "identity":
        return Workload(name, (ident,) * 3, 5_000 if quick else 200_000, "ints", 1000, 0, False)
    if name == "cpu":
        return Workload(name, (burn,) * 3, 30 if quick else 300, "ints", 1, 3, False)
    if name == "cpu_unbalanced":
        middle = StageSpec(fns.burn_double, workers=2)
        return Workload(name, (burn, middle, burn), 30 if quick else 300, "ints", 1, 3, False)
    if name == "arrays":
        from .fns_array import ident_array

        return Workload(
            name, (StageSpec(ident_array),) * 2, 20 if quick else 200, "arrays", 1, 0, True
        )
    if name == "memory":
        add = StageSpec(fns.add_one)
        return Workload(name, (add, add), 5_000 if quick else 1_000_000, "ints", 1000, 2, True)
    if name == "images":
        from . import fns_image as im

        stages = (
            StageSpec(im.decode_image),
            StageSpec(im.resize_image),
            StageSpec(im.augment_image, workers=2),
            StageSpec(im.encode_image, workers=2),
        )
        return Workload(name, stages, 16 if quick else 160, "images", 1, 0, False)
    if name in SYNTHETIC:
        n = (40 if quick else 400) if name == "heavy_tail" else (30 if quick else 300)
        costs = (
            fns.heavy_tail_costs(n, mean_ms=3.0)
            if name == "heavy_tail"
            else fns.periodic_costs(n, base_ms=1.0, spike_ms=20.0, period=10)
        )
        light = StageSpec(fns.Burn(LIGHT_MS))
        middle = StageSpec(fns.BurnByIndex(costs), workers=2)
        return Workload(name, (light, middle, light), n, "ints", 1, 3, False)
    msg = f"unknown workload {name!r} (one of {', '.join(WORKLOADS)})"
    raise ValueError(msg)


def nominal_cpu_seconds(w: Workload) -> float:
    """The stages' CPU cost over all items, from the calibrated busy loop."""
    total_ms = 0.0
    for s in w.stages:
        if s.fn is fns.burn or s.fn is fns.burn_double:
            total_ms += w.n * fns.BURN_MS * (2 if s.fn is fns.burn_double else 1)
        elif isinstance(s.fn, fns.Burn):
            total_ms += w.n * s.fn.ms
        elif isinstance(s.fn, fns.BurnByIndex):
            total_ms += sum(s.fn.costs_ms[: w.n])
    return total_ms / 1000.0


def item_costs_ms(w: Workload) -> list[float] | None:
    """Each item's CPU cost over all stages (ms), where every stage's cost is known: the skewed
    workloads (item k is the int k); None elsewhere."""
    if w.name not in SYNTHETIC:
        return None
    costs = [0.0] * w.n
    for s in w.stages:
        if isinstance(s.fn, fns.Burn):
            costs = [c + s.fn.ms for c in costs]
        elif isinstance(s.fn, fns.BurnByIndex):
            costs = [c + s.fn.costs_ms[k] for k, c in enumerate(costs)]
        else:
            return None
    return costs


# -- sources: lazy generators, the same for every system --


def int_source(n: int) -> Iterator[int]:
    yield from range(n)


def _base_array() -> npt.NDArray[np.uint8]:
    import numpy as np

    return np.random.default_rng(12345).integers(0, 256, ARRAY_BYTES, dtype=np.uint8)


_PROBES = (8, 1000, 1_234_567, 3_999_000, ARRAY_BYTES - 9)


def array_source(n: int) -> Iterator[Any]:
    """``n`` fresh 4 MB arrays; item k carries k in its first and last 8 bytes.

    The random base array is made here, before the caller starts its clock.
    """
    return _arrays(_base_array(), n)


def _arrays(base: npt.NDArray[np.uint8], n: int) -> Iterator[Any]:
    import numpy as np

    for k in range(n):
        arr = base.copy()
        stamp = np.frombuffer(k.to_bytes(8, "little"), dtype=np.uint8)
        arr[:8] = stamp
        arr[-8:] = stamp
        yield arr


def source(w: Workload) -> Iterator[Any]:
    """The workload's items; the images are all made (or loaded) here, before the clock."""
    if w.kind == "images":
        from .fns_image import source_images

        return iter(source_images(w.n))
    return array_source(w.n) if w.kind == "arrays" else int_source(w.n)


# -- checks --


class Checker:
    """Checks outputs one by one in O(1) memory: output k must come from source item k.

    That alone proves completeness and order; a count, a sum of indices and the number of
    descents tell what went wrong when it fails.
    """

    def __init__(self, w: Workload) -> None:
        self.w = w
        self.count = 0
        self.mismatches = 0
        self.wrong = 0
        self.descents = 0
        self.index_sum = 0
        self._last = -1
        self._probes: list[int] | None = None
        if w.kind == "arrays":
            base = _base_array()
            self._probes = [int(base[i]) for i in _PROBES]

    def _index_of(self, item: Any) -> int | None:
        """The source index an output came from, or None if its content is wrong."""
        if self.w.kind == "ints":
            return item - self.w.offset if type(item) is int else None
        if self.w.kind == "images":
            return _image_index(item)
        import numpy as np

        if not isinstance(item, np.ndarray):
            return None
        arr = cast("npt.NDArray[np.uint8]", item)
        if arr.shape != (ARRAY_BYTES,):
            return None
        head = int.from_bytes(arr[:8].tobytes(), "little")
        tail = int.from_bytes(arr[-8:].tobytes(), "little")
        if head != tail or [int(arr[i]) for i in _PROBES] != self._probes:
            return None
        return head

    def feed(self, item: Any) -> None:
        k = self._index_of(item)
        if k is None:
            self.wrong += 1
        else:
            if k != self.count:
                self.mismatches += 1
            if k < self._last:
                self.descents += 1
            self._last = k
            self.index_sum += k
        self.count += 1

    def verdict(self) -> str | None:
        """None if every output came, once, in order; else a short reason."""
        n = self.w.n
        if self.wrong:
            return f"wrong content in {self.wrong} outputs"
        if self.count != n:
            return f"{self.count} of {n} outputs"
        if self.mismatches == 0:
            return None
        if self.index_sum == n * (n - 1) // 2 and self.descents:
            return f"reordered: {self.descents} descents in {n}"
        return f"{self.mismatches} outputs out of place"


def _image_index(item: Any) -> int | None:
    """Output image k is ``img_<k>.webp``, non-empty WebP bytes; None if it is not."""
    from examples.images import Encoded

    from .fns_image import is_webp, name_of

    if not isinstance(item, Encoded) or not is_webp(item.data):
        return None
    stem, dot, extension = item.name.rpartition(".")
    head, _, digits = stem.rpartition("_")
    if not (dot and extension == "webp" and digits.isdigit()):
        return None
    k = int(digits)
    return k if f"{head}_{digits}" == name_of(k) else None


def check_list(w: Workload, outputs: Sequence[Any]) -> str | None:
    """None if ``outputs`` is complete and in order; else a short reason."""
    if w.kind == "ints" and list(outputs) == [k + w.offset for k in range(w.n)]:
        return None
    checker = Checker(w)
    for item in outputs:
        checker.feed(item)
    return checker.verdict()
