"""Inter-annotator agreement on one yes/no decision per case.

Cohen's kappa (scikit-learn) for two reviewers on the cases both labelled; Krippendorff's
alpha (the ``krippendorff`` package, nominal level) for any number, with missing ratings.
Both return None when undefined (fewer than two rated cases, or no variation at all).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def cohen_kappa(a: Sequence[bool | None], b: Sequence[bool | None]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 2:
        return None
    left, right = [int(x) for x, _ in pairs], [int(y) for _, y in pairs]
    if len(set(left) | set(right)) < 2:
        return None  # everyone said the same thing every time: chance agreement is 1
    value = float(cohen_kappa_score(left, right, labels=[0, 1]))
    return None if math.isnan(value) else value


def krippendorff_alpha(matrix: Sequence[Sequence[bool | None]]) -> float | None:
    """``matrix[reviewer][case]``: True / False / None (not rated)."""
    import krippendorff

    data = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    values = data[:, pairable]
    if values.shape[1] < 2 or len(set(values[~np.isnan(values)].tolist())) < 2:
        return None
    value = float(krippendorff.alpha(reliability_data=values, level_of_measurement="nominal"))
    return None if math.isnan(value) else value
