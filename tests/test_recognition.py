"""Rank-1 and VR@FAR (mixgan.metrics.recognition) on closed-form and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from mixgan.metrics.recognition import (
    cosine_scores,
    genuine_mask,
    rank1,
    recognition_metrics,
    verification_rate,
)


def test_identical_gallery_and_probes_are_perfect():
    features = np.random.default_rng(0).normal(size=(50, 256))
    ids = np.arange(50)
    out = recognition_metrics(features, ids, features, ids)
    assert out == {"rank1": 100.0, "vr@far=0.01": 100.0, "vr@far=0.001": 100.0}


def test_cosine_ignores_feature_scale():
    probe = np.array([[1.0, 0.0], [1.0, 1.0]])
    gallery = np.array([[3.0, 0.0], [0.0, 0.5]])
    assert np.allclose(cosine_scores(probe, gallery), [[1, 0], [2**-0.5, 2**-0.5]])


def test_rank1_hand_case():
    # probe 0 best matches gallery id 7 (right), probe 1 best matches id 7 (wrong: it is 8),
    # probe 2 best matches id 9 (right)
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.1], [0.0, 0.1, 0.3]])
    genuine = genuine_mask([7, 8, 9], [7, 8, 9])
    assert rank1(scores, genuine) == pytest.approx(2 / 3)


def _hand_case() -> tuple[np.ndarray, np.ndarray]:
    impostor = np.arange(1000) / 1000  # 0.000 ... 0.999
    genuine = np.array([0.9995, 0.995, 0.9905, 0.990, 0.989, 0.5])
    scores = np.concatenate([genuine, impostor])[None, :]
    mask = np.zeros_like(scores, dtype=bool)
    mask[0, : len(genuine)] = True
    return scores, mask


def test_vr_hand_computed_at_table2_fars():
    scores, mask = _hand_case()
    # FAR 1 %: at most 10 of 1000 impostors accepted, so the threshold lies above the 11th
    # highest impostor (0.989): genuine 0.9995, 0.995, 0.9905, 0.990 pass; 0.989 (a tie with
    # that impostor) and 0.5 do not -> 4/6.
    assert verification_rate(scores, mask, 0.01) == pytest.approx(4 / 6)
    # FAR 0.1 %: at most 1 impostor (0.999) -> threshold above 0.998: only 0.9995 -> 1/6.
    assert verification_rate(scores, mask, 0.001) == pytest.approx(1 / 6)
    # FAR 0: above every impostor
    assert verification_rate(scores, mask, 0.0) == pytest.approx(1 / 6)


def _roc_reference(scores: np.ndarray, mask: np.ndarray, far: float) -> float:
    """roc_curve(drop_intermediate=False) by enumeration: accept score >= t for every
    threshold t among the scores (and +inf); tpr[fpr <= far][-1]."""
    genuine, impostor = scores[mask], scores[~mask]
    best = 0.0
    for t in np.unique(scores):
        if (impostor >= t).mean() <= far:
            best = max(best, (genuine >= t).mean())
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vr_matches_roc_enumeration(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(30, 40)), 2)  # rounded: many ties
    mask = genuine_mask(rng.integers(0, 10, 30), rng.integers(0, 10, 40))
    for far in (0.0, 0.001, 0.01, 0.05, 0.3, 1.0):
        assert verification_rate(scores, mask, far) == pytest.approx(
            _roc_reference(scores, mask, far)
        )


def test_vr_needs_both_kinds_of_pairs():
    with pytest.raises(ValueError, match="genuine and impostor"):
        verification_rate(np.ones((2, 2)), np.ones((2, 2), dtype=bool), 0.01)
