"""olympipe's ``olympipe.monitoring``.

Here every run keeps live per-stage counts (``Pipeline.queues``) at no cost, so monitoring
is always on; ``enable_monitoring()`` records the choice, as olympipe does, for code that
reads it back. Copies of the items in flight (``inspect_messages``) are not kept.
"""

import os

__all__ = ["enable_monitoring", "inspect_messages_enabled", "monitoring_enabled"]

_inspect_messages = False


def monitoring_enabled() -> bool:
    """Always True: ``Pipeline.queues`` is filled for every run."""
    return True


def inspect_messages_enabled() -> bool:
    """Whether ``enable_monitoring(inspect_messages=True)`` was called (items are not copied)."""
    return _inspect_messages


def enable_monitoring(inspect_messages: bool = False) -> None:
    """Accepted for olympipe's programs; sets ``OLYMPIPE_MONITORING=1`` as olympipe does."""
    global _inspect_messages
    os.environ["OLYMPIPE_MONITORING"] = "1"
    if inspect_messages:
        _inspect_messages = True
