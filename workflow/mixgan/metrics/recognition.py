"""Face recognition metrics of ReMix Table 2 (CASIA NIR-VIS 2.0, "recognition via generation").

Every probe (a NIR face, or its VIS translation) is compared with every gallery face (one VIS
image per identity in the protocol's ``vis_gallery_<fold>.txt``) by the cosine similarity of
their LightCNN features; a pair is genuine when both carry the same identity.

* **Rank-1**: the fraction of probes whose most similar gallery face has the probe's identity
  (``np.argmax`` over the gallery, first index on ties).
* **VR@FAR**: the verification rate (true accept rate) over all probe × gallery pairs at the
  threshold whose false accept rate does not exceed the target. A pair is accepted when its
  score is >= the threshold (``sklearn.metrics.roc_curve``'s convention) and VR is the largest
  TAR among thresholds with FAR <= target: ``tpr[fpr <= far][-1]`` in the CASIA NIR-VIS 2.0
  evaluation of stephenkung/NIR_VIS_Face_Recognition ``extract_features.py``
  (``compute_metric``, on ``cosine_similarity(gallery, probe).T``). Here every threshold counts
  (``roc_curve(drop_intermediate=False)``); ``drop_intermediate=True`` can only differ where
  three ROC points are exactly collinear. deepinsight/insightface ``recognition/idmmd/evaluate/
  eval_ops.py`` (``evaluate2``) instead takes the ROC point whose FPR is *nearest* the target,
  which may exceed it; that reading is not used here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TABLE2_FARS = (0.01, 0.001)  # ReMix Table 2: VR@FAR=1 %, VR@FAR=0.1 %


def cosine_scores(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """P×G cosine similarities of probe (P×D) and gallery (G×D) features."""
    probe = np.asarray(probe, dtype=np.float64)
    gallery = np.asarray(gallery, dtype=np.float64)
    probe = probe / np.linalg.norm(probe, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    return probe @ gallery.T


def genuine_mask(probe_ids: Sequence, gallery_ids: Sequence) -> np.ndarray:
    """P×G booleans: probe i and gallery j share an identity."""
    return np.equal.outer(np.asarray(probe_ids), np.asarray(gallery_ids))


def rank1(scores: np.ndarray, genuine: np.ndarray) -> float:
    """Fraction of probes (rows) whose best-scoring gallery entry is genuine."""
    best = np.argmax(scores, axis=1)
    return float(genuine[np.arange(len(scores)), best].mean())


def verification_rate(scores: np.ndarray, genuine: np.ndarray, far: float) -> float:
    """Largest TAR over thresholds t (accept: score >= t) whose FAR is <= ``far``."""
    scores = np.asarray(scores, dtype=np.float64)
    true_scores, false_scores = scores[genuine], scores[~genuine]
    if len(true_scores) == 0 or len(false_scores) == 0:
        raise ValueError("verification needs genuine and impostor pairs")
    n = len(false_scores)
    allowed = int(far * n)  # the most impostors accepted: largest k with k / n <= far
    while allowed < n and (allowed + 1) / n <= far:
        allowed += 1
    while allowed > 0 and allowed / n > far:
        allowed -= 1
    if allowed >= n:
        return 1.0
    # Accepting the (allowed+1)-th highest impostor score (and all ties with it) breaks the
    # FAR bound, so the threshold must lie strictly above it.
    bound = np.sort(false_scores)[::-1][allowed]
    return float((true_scores > bound).mean())


def recognition_metrics(
    probe_features: np.ndarray,
    probe_ids: Sequence,
    gallery_features: np.ndarray,
    gallery_ids: Sequence,
    fars: Sequence[float] = TABLE2_FARS,
) -> dict[str, float]:
    """Rank-1 and VR at each FAR, in percent (``rank1``, ``vr@far=0.01``, ...)."""
    scores = cosine_scores(probe_features, gallery_features)
    genuine = genuine_mask(probe_ids, gallery_ids)
    out = {"rank1": 100 * rank1(scores, genuine)}
    out.update({f"vr@far={far:g}": 100 * verification_rate(scores, genuine, far) for far in fars})
    return out
