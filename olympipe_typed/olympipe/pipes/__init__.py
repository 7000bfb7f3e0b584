"""olympipe's ``olympipe.pipes``: its step classes, usable with ``Pipeline.create_pipe``."""
