"""mIoU and pixel accuracy (mixgan.metrics.segmentation) as fyu/drn segment.py computes them."""

from __future__ import annotations

import numpy as np
import pytest

from mixgan.metrics.segmentation import (
    confusion_matrix,
    per_class_iou,
    segmentation_scores,
    train_ids,
)

LABEL = np.array([[0, 0, 1, 255], [2, 2, 1, 1]])
PRED = np.array([[0, 1, 1, 2], [2, 0, 1, 1]])


def test_hand_computed_confusion_miou_and_accuracy():
    hist = confusion_matrix(PRED, LABEL, 3)
    # rows = ground truth, columns = prediction; the 255 pixel is skipped
    assert hist.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    assert np.allclose(per_class_iou(hist), [1 / 3, 3 / 4, 1 / 2])
    scores = segmentation_scores(hist)
    assert scores["miou"] == pytest.approx(100 * 19 / 36)
    assert scores["accu"] == pytest.approx(100 * 5 / 7)


def test_absent_classes_are_skipped_and_only_predicted_ones_count_zero():
    assert segmentation_scores(confusion_matrix(PRED, LABEL, 4))["miou"] == pytest.approx(
        100 * 19 / 36
    )  # class 3 is absent from labels and predictions: NaN, left out
    pred = PRED.copy()
    pred[0, 0] = 3  # class 3 predicted once, never labelled: IoU 0; class 0 drops to 0
    scores = segmentation_scores(confusion_matrix(pred, LABEL, 4))
    assert scores["miou"] == pytest.approx(100 * (0 + 3 / 4 + 1 / 2 + 0) / 4)
    assert scores["accu"] == pytest.approx(100 * 4 / 7)


def test_perfect_prediction_and_accumulation():
    hist = confusion_matrix(LABEL, LABEL, 3)
    assert segmentation_scores(hist) == {"miou": 100.0, "accu": 100.0}
    two = confusion_matrix(PRED, LABEL, 3) + confusion_matrix(LABEL, LABEL, 3)
    assert segmentation_scores(two)["accu"] == pytest.approx(100 * 12 / 14)


def test_cityscapes_label_ids_to_train_ids():
    ids = np.array([7, 8, 26, 33, 0, 6, 34, -1])
    assert train_ids(ids).tolist() == [0, 1, 13, 18, 255, 255, 255, 255]
