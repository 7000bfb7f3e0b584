"""Make ``$OLYMPIPE_TYPED_TEST_START_METHOD`` the default start method of every Python process.

tools/wheeltest.py puts this folder on PYTHONPATH for its forkserver and spawn legs, so that the
tests, the scripts they start and the examples all run as under Python 3.14 (forkserver by
default on Linux) or macOS (spawn), without a change to any of them.
"""

import os

_method = os.environ.get("OLYMPIPE_TYPED_TEST_START_METHOD")
if _method:
    import multiprocessing

    multiprocessing.set_start_method(_method, force=True)
