"""Segmentation scores of ReMix Table 3 (and SPADE's Cityscapes evaluation): mIoU and pixel
accuracy of a segmenter's predictions on generated images against the input label maps.

As fyu/drn ``segment.py`` (commit d75db2e):

* ``fast_hist(pred, label, n)``: an n×n confusion matrix, rows = ground truth, columns =
  prediction, over the pixels whose label lies in ``[0, n)``; the Cityscapes "ignore" label 255
  (README: "Invalid pixels can be labeled as 255 and they will be ignored") falls outside;
* ``per_class_iu(hist) = diag / (row sum + column sum - diag)``; ``test`` reports
  ``np.nanmean`` of it, so a class absent from both ground truth and prediction (0/0) does not
  count, while a class only predicted counts as IoU 0;
* pixel accuracy = ``diag.sum() / hist.sum()`` over the non-ignored pixels (``segment.py``
  ``accuracy``: correct / all pixels whose target is not 255).

Cityscapes: 19 train classes (:data:`mixgan.nets.drn.CITYSCAPES_CLASSES`); the 35 label ids
of ``gtFine_labelIds`` map to them with :data:`LABEL_ID_TO_TRAIN_ID` (cityscapesScripts
``helpers/labels.py`` ``trainId``; every other id → 255).
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255
# cityscapesScripts labels.py: (id, trainId) of the 19 evaluated classes, road .. bicycle.
LABEL_ID_TO_TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes ``labelIds`` (0..33, -1) → ``trainId`` (0..18, 255 elsewhere), as uint8."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut[np.asarray(label_ids).astype(np.int64) % 256]


def confusion_matrix(pred: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """``segment.py`` ``fast_hist``: rows ground truth, columns prediction; labels outside
    ``[0, classes)`` (255) are skipped."""
    pred = np.asarray(pred).astype(np.int64).ravel()
    label = np.asarray(label).astype(np.int64).ravel()
    keep = (label >= 0) & (label < classes)
    return np.bincount(classes * label[keep] + pred[keep], minlength=classes**2).reshape(
        classes, classes
    )


def per_class_iou(hist: np.ndarray) -> np.ndarray:
    """``segment.py`` ``per_class_iu``: NaN for a class absent from label and prediction."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    with np.errstate(invalid="ignore", divide="ignore"):
        return diag / (hist.sum(1) + hist.sum(0) - diag)


def segmentation_scores(hist: np.ndarray) -> dict[str, float]:
    """mIoU (``np.nanmean`` of the per-class IoU) and pixel accuracy, in percent."""
    hist = np.asarray(hist, dtype=np.float64)
    return {
        "miou": float(100 * np.nanmean(per_class_iou(hist))),
        "accu": float(100 * np.diag(hist).sum() / hist.sum()),
    }
