"""Runnable examples; each one asserts its own result (``python -m examples.<name>``)."""
