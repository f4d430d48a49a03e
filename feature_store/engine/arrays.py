"""Stacking the arrays a query or a window reads into one ``x`` (NumPy only, no engine import)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["assemble"]


def assemble(parts: list[np.ndarray], names: Sequence[str], *, dtype: str = "float32") -> np.ndarray:
    """``x`` from the arrays read: one multi-dimensional array as it is, vectors side by side."""
    if len(parts) == 1 and parts[0].ndim > 2:
        return parts[0].astype(dtype, copy=False)
    flat = [p.reshape(p.shape[0], -1) for p in parts]
    return np.concatenate(flat, axis=1).astype(dtype, copy=False) if flat else np.empty((0, 0), dtype)
