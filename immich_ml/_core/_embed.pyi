"""Compiled embedding kernels (pyx/_embed.pyx). Use immich_ml.ops.embed, which validates."""

import numpy as np
from numpy.typing import NDArray

def l2_normalize_rows(src: NDArray[np.float32], dst: NDArray[np.float32]) -> None: ...
