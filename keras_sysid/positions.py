"""Sub-pixel localisation of the peak of weight maps (masks, RF energy maps)."""

from __future__ import annotations

import numpy as np


def peak_positions(weight_maps: np.ndarray) -> np.ndarray:
    """Sub-pixel peak of non-negative maps ``(N, H, W)`` -> ``(N, 2)`` (row, col).

    The peak is the arg-max, refined by the centre of mass of its 3x3
    neighbourhood, so a mask spread over two grid cells lands between them.
    """
    n, _, width = weight_maps.shape
    flat_peak = weight_maps.reshape(n, -1).argmax(axis=1)
    rows, cols = np.divmod(flat_peak, width)
    padded = np.pad(weight_maps, ((0, 0), (1, 1), (1, 1)))
    offsets = np.arange(-1, 2)
    patch_rows = (rows[:, None] + 1 + offsets)[:, :, None]
    patch_cols = (cols[:, None] + 1 + offsets)[:, None, :]
    patches = padded[np.arange(n)[:, None, None], patch_rows, patch_cols]  # (N, 3, 3)
    total = patches.sum(axis=(1, 2))
    total = np.where(total > 0, total, 1.0)
    row_shift = (patches.sum(axis=2) * offsets).sum(axis=1) / total
    col_shift = (patches.sum(axis=1) * offsets).sum(axis=1) / total
    return np.stack([rows + row_shift, cols + col_shift], axis=1)
