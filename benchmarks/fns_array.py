"""The array stage (imports numpy, so it is kept apart from :mod:`benchmarks.fns`)."""

import numpy as np
import numpy.typing as npt


def ident_array(x: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The identity stage for arrays."""
    return x
