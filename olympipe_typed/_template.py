"""Stage templates: the untyped tree behind every ``Stage`` (leaves, chains, fan-outs).

A template is immutable and holds no process state, so one stage may appear
several times in one graph and in several graphs; ``_graph`` expands it into
fresh nodes at each use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from ._errors import WiringError
from ._hints import UNKNOWN, check_edge, fits, hint_repr, list_of, union_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._ops import Op


class Leaf:
    """One operator."""

    __slots__ = ("op",)

    def __init__(self, op: Op) -> None:
        self.op = op


class Chain:
    """``a >> b >> ...``: each part's outputs are the next part's inputs."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Template, ...]) -> None:
        self.parts = parts


class Fan:
    """``a | b | ...``: every input goes to each branch; outputs merged per input, in branch order."""

    __slots__ = ("branches",)

    def __init__(self, branches: tuple[Template, ...]) -> None:
        self.branches = branches


Template: TypeAlias = Leaf | Chain | Fan


def chain(first: Template, second: Template) -> Chain:
    """``first >> second``, flattened, after checking the edge between them."""
    check_chain(first, second)
    parts = (*_parts(first), *_parts(second))
    return Chain(parts)


def _parts(t: Template) -> tuple[Template, ...]:
    return t.parts if isinstance(t, Chain) else (t,)


def fan(first: Template, second: Template) -> Fan:
    """``first | second``, flattened, after checking that both accept the same items."""
    given = in_hint(first)
    for consumer in first_leaves(second):
        if not fits(given, consumer.in_hint):
            msg = (
                f"fan-out {describe(first)!r} | {consumer.name!r}: both branches receive every "
                f"item, but {describe(first)!r} takes {hint_repr(given)} and {consumer.name!r} "
                f"takes {hint_repr(consumer.in_hint)}"
            )
            raise WiringError(msg)
    branches = (*_branches(first), *_branches(second))
    return Fan(branches)


def _branches(t: Template) -> tuple[Template, ...]:
    return t.branches if isinstance(t, Fan) else (t,)


def first_leaves(t: Template) -> Iterator[Op]:
    """The operators that receive a template's input items."""
    if isinstance(t, Leaf):
        yield t.op
    elif isinstance(t, Chain):
        yield from first_leaves(t.parts[0])
    else:
        for b in t.branches:
            yield from first_leaves(b)


def last_leaves(t: Template) -> Iterator[Op]:
    """The operators whose outputs are a template's outputs."""
    if isinstance(t, Leaf):
        yield t.op
    elif isinstance(t, Chain):
        yield from last_leaves(t.parts[-1])
    else:
        for b in t.branches:
            yield from last_leaves(b)


def leaves(t: Template) -> Iterator[Op]:
    """Every operator of a template, in wiring order."""
    if isinstance(t, Leaf):
        yield t.op
    else:
        for sub in t.parts if isinstance(t, Chain) else t.branches:
            yield from leaves(sub)


def in_hint(t: Template) -> object:
    """The item type a template accepts (the first annotated leaf's), UNKNOWN if none."""
    for op in first_leaves(t):
        if op.in_hint is not UNKNOWN:
            return op.in_hint
    return UNKNOWN


def out_hint(t: Template, given: object) -> object:
    """The item type a template produces when fed items of hint ``given``."""
    if isinstance(t, Leaf):
        return op_out_hint(t.op, given)
    if isinstance(t, Chain):
        for part in t.parts:
            given = out_hint(part, given)
        return given
    return union_of(out_hint(b, given) for b in t.branches)


def op_out_hint(op: Op, given: object) -> object:
    """What one operator produces from items of hint ``given``."""
    if op.kind in ("batch", "temporal_batch"):
        return list_of(given)
    if op.kind in ("filter", "limit", "timeout", "merge") and op.out_hint is UNKNOWN:
        return given
    return op.out_hint


def check_chain(first: Template, second: Template) -> None:
    """Raise WiringError when ``first``'s outputs cannot be ``second``'s inputs."""
    produced = out_hint(first, in_hint(first))
    if produced is UNKNOWN:
        return
    producer = " | ".join(op.name for op in last_leaves(first))
    for consumer in first_leaves(second):
        check_edge(producer, produced, consumer.name, consumer.in_hint)


def check_feed(producer: str, produced: object, second: Template) -> None:
    """Raise WiringError when items of hint ``produced`` cannot enter ``second``."""
    for consumer in first_leaves(second):
        check_edge(producer, produced, consumer.name, consumer.in_hint)


def describe(t: Template) -> str:
    """``parse >> (a | b)``: a template as its stage names."""
    if isinstance(t, Leaf):
        return t.op.name
    if isinstance(t, Chain):
        return " >> ".join(
            f"({describe(p)})" if isinstance(p, Fan) else describe(p) for p in t.parts
        )
    return " | ".join(
        f"({describe(b)})" if isinstance(b, Chain) else describe(b) for b in t.branches
    )


def with_options(t: Template, changes: dict[str, object]) -> Template:
    """A copy of ``t`` whose every leaf has ``changes`` applied to its options."""
    if isinstance(t, Leaf):
        options = t.op.options.replace(**changes)
        return Leaf(t.op.replace(options=options))
    if isinstance(t, Chain):
        return Chain(tuple(with_options(p, changes) for p in t.parts))
    return Fan(tuple(with_options(b, changes) for b in t.branches))
