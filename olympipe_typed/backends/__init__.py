"""Backends: each runs a compiled graph and yields ``(output index, items)`` pairs.

``inline`` is the reference semantics; every other backend must give the same
results for the same graph (as multisets where a stage has ``ordered=False``).
"""
