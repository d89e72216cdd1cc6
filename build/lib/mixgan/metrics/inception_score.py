"""Inception Score (Salimans et al., 2016) from class probabilities.

IS = exp(E_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over the split, computed on each of
``splits`` consecutive parts of the samples (part i = rows [i n / s, (i + 1) n / s), as in
stylegan2-ada-pytorch), reported as mean and standard deviation (ddof = 0) over parts.
0 log 0 counts as 0. The probabilities come from the Inception network's softmax
(``mixgan.metrics.inception_layers.class_probabilities``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and std over ``splits`` parts of exp(mean KL(p(y|x) || p(y))); probs is N x classes."""
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    if probs.ndim != 2 or n < splits:
        raise ValueError(f"expected at least {splits} rows of class probabilities")
    scores = []
    for index in range(splits):
        part = probs[index * n // splits : (index + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
