"""``cached_task`` wraps results in ``CacheEnvelope``; ``uncache()`` unwraps them."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from olympipe_typed import CacheEnvelope, Pipeline, source, stage

if TYPE_CHECKING:
    from pathlib import Path


def expensive(x: int) -> str:
    return str(x) * 1000


@stage
def length(s: str) -> int:
    return len(s)


@stage
def key_of(envelope: CacheEnvelope[object]) -> str:
    return envelope.key


def check(cache_dir: Path) -> None:
    """Cached tasks and their envelopes (built, never run)."""
    p = Pipeline(range(10))
    cached = p.cached_task(expensive, "/tmp/cache")
    assert_type(cached, Pipeline[CacheEnvelope[str]])
    assert_type(p.cached_task(expensive, cache_dir, count=2), Pipeline[CacheEnvelope[str]])
    assert_type(cached.uncache(), Pipeline[str])
    assert_type(cached.uncache() >> length, Pipeline[int])
    # The envelope is covariant: a CacheEnvelope[str] is a CacheEnvelope[object].
    assert_type(cached >> key_of, Pipeline[str])
    assert_type(source(range(3)).cached_task(expensive, cache_dir).uncache(), Pipeline[str])
    # A cached step after a cached step gets the result inside the envelope.
    assert_type(cached.cached_task(len, cache_dir), Pipeline[CacheEnvelope[int]])
    envelopes = cached.wait_for_result()
    assert_type(envelopes, list[CacheEnvelope[str]])
    assert_type(envelopes[0].data, str)
    assert_type(envelopes[0].key, str)
