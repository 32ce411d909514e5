"""A simple, documented peak picker that turns a profile spectrum into a centroided one.

Every local maximum of the profile (higher than its left neighbour, at least as high as its right one,
and above zero) becomes one peak. Its m/z is the intensity-weighted mean of the apex and its two
neighbours (those of them with non-zero intensity), its intensity the apex height. This is what
vendor-independent tools do at their simplest; it does no noise estimation or peak-width fitting, so
noisy profiles give many small peaks, which the preprocessing filters (intensity floor, top-N) remove.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def centroid_profile(mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.float32]
                     ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """Centroid a profile spectrum (``mz`` ascending) by local maxima; see the module docstring."""
    n = mz.shape[0]
    if n == 0:
        return mz.astype(np.float64), intensity.astype(np.float32)
    y = intensity.astype(np.float64)
    left = np.concatenate(([-np.inf], y[:-1]))
    right = np.concatenate((y[1:], [-np.inf]))
    apex = np.flatnonzero((y > left) & (y >= right) & (y > 0))
    lo = np.clip(apex - 1, 0, n - 1)
    hi = np.clip(apex + 1, 0, n - 1)
    w_lo = np.where(lo < apex, y[lo], 0.0)
    w_hi = np.where(hi > apex, y[hi], 0.0)
    w_apex = y[apex]
    total = w_lo + w_apex + w_hi
    centre = (w_lo * mz[lo] + w_apex * mz[apex] + w_hi * mz[hi]) / total
    return centre.astype(np.float64), intensity[apex].astype(np.float32)
