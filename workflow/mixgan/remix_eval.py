"""Scores of ReMix Tables 2–3 (``mixgan remix-eval``): one job per table, every run at once.

* remix_table3 (SPADE's protocol): the generators translate the *val* label maps; DRN-D-105
  (``weights.pretrained.drn_d_105``) segments the outputs; mIoU and pixel accuracy against the
  val labels (Cityscapes ``labelIds`` → 19 ``trainId`` classes; procedural: 5 classes); FID of
  the outputs against the val photos (Inception pool features, the table's resize). "Real
  Data": the segmenter on the real val photos.
* remix_table2 ("recognition via generation"): each NIR probe is translated, LightCNN-29 v2
  (``weights.pretrained.lightcnn29v2``) features of the translation are matched against the
  VIS gallery by cosine similarity: Rank-1, VR@FAR 1 % and 0.1 %. "Raw Input": the NIR probes
  themselves.

Without a checkpoint (demo, ``allow_standins``) a seeded untrained network stands in and each
value is labelled "stand-in features".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixgan.metrics.recognition import recognition_metrics
from mixgan.metrics.segmentation import confusion_matrix, segmentation_scores, train_ids
from mixgan.train.remix_run import encoder, pretrained

#: the record key ``mixgan.metrics.recognition`` uses for each table metric
RECOGNITION_KEYS = {"rank1": "rank1", "vr_far_1": "vr@far=0.01", "vr_far_0_1": "vr@far=0.001"}


def load_generator(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved["arch"] == "spade":
        from mixgan.train.spade_train import build_generator

        net = build_generator(saved["options"], saved["resolution"])
    else:
        from mixgan.train.nirvis import build_decoder

        net = build_decoder(saved["options"], saved["resolution"])
    net.load_state_dict(saved["state"])
    return net.to(device).eval(), saved


def _segmenter(spec: dict[str, Any], procedural: bool) -> tuple[Any, list[str], int]:
    from mixgan.data.remix_data import SHAPE_CLASSES
    from mixgan.nets.drn import CITYSCAPES_CLASSES, DRNSeg, load_drn_seg

    classes = SHAPE_CLASSES if procedural else CITYSCAPES_CLASSES
    net, labels = pretrained(spec, "drn_d_105", lambda: DRNSeg(classes), load_drn_seg)
    return net, labels, classes


def _segmentation(
    net: Any, images: np.ndarray, truth: np.ndarray, classes: int
) -> dict[str, float]:
    hist = np.zeros((classes, classes), np.int64)
    for i in range(0, len(images), 4):
        batch = torch.from_numpy(images[i : i + 4]).permute(0, 3, 1, 2).float() / 255
        pred = net.predict(batch).numpy()
        hist += confusion_matrix(pred, truth[i : i + 4], classes)
    scores = segmentation_scores(hist)
    return {"miou": scores["miou"], "pixel_accuracy": scores["accu"]}


def evaluate_spade(
    spec: dict[str, Any],
    data: dict[str, np.ndarray],
    generators: dict[str, Path],
    inception: Path,
    device: torch.device,
) -> dict[str, dict[str, Any]]:
    from mixgan.metrics.fid_kid import fid_from_features
    from mixgan.metrics.inception import InceptionFeatures
    from mixgan.train.spade_train import generate

    procedural = spec["stand_in_data"]
    val = np.flatnonzero(~data["train"])
    truth = data["labels"][val] if procedural else train_ids(data["labels"][val])
    segmenter, labels, classes = _segmenter(spec, procedural)
    extractor = InceptionFeatures(inception, str(device), resize=spec["resize"])
    real_features = extractor.of_arrays(data["images"][val])
    out = {
        spec["evaluation_run"]: {
            **_segmentation(segmenter, data["images"][val], truth, classes),
            "labels": labels,
            "num_samples": len(val),
        }
    }
    for run, path in generators.items():
        generator, saved = load_generator(path, device)
        fakes = generate(generator, data, val, saved["options"], device)
        scores = _segmentation(segmenter, fakes, truth, classes)
        scores["fid"] = fid_from_features(extractor.of_arrays(fakes), real_features)
        out[run] = {
            **scores,
            "labels": sorted({*labels, *saved["labels"]}),
            "num_samples": len(val),
        }
    return out


def evaluate_nirvis(
    spec: dict[str, Any],
    data: dict[str, np.ndarray],
    generators: dict[str, Path],
    device: torch.device,
) -> dict[str, dict[str, Any]]:
    from mixgan.train.nirvis import lightcnn_features, translate

    net, labels = encoder(spec)
    probes = np.flatnonzero(data["nir_probe"])
    gallery = np.flatnonzero(data["vis_gallery"])
    gallery_features = lightcnn_features(net, data["vis"][gallery], 32, device).numpy()
    probe_ids, gallery_ids = data["ids"][probes], data["vis_ids"][gallery]
    nir_features = lightcnn_features(net, data["nir"][probes], 32, device)

    def scores(features: np.ndarray) -> dict[str, float]:
        values = recognition_metrics(features, probe_ids, gallery_features, gallery_ids)
        return {metric: values[key] for metric, key in RECOGNITION_KEYS.items()}

    out = {
        spec["evaluation_run"]: {
            **scores(nir_features.numpy()),
            "labels": labels,
            "num_samples": len(probes),
        }
    }
    for run, path in generators.items():
        generator, saved = load_generator(path, device)
        translated = translate(generator, nir_features, 32, device)
        features = lightcnn_features(net, translated, 32, device).numpy()
        out[run] = {
            **scores(features),
            "labels": sorted({*labels, *saved["labels"]}),
            "num_samples": len(probes),
        }
    return out


def table_records(
    spec: dict[str, Any], results: dict[str, dict[str, Any]]
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Records of the table's cells (``mixgan.report.tables`` keys) from the evaluation."""
    records = {}
    for cell in spec["cells"]:
        for run in cell["runs"]:
            result = results.get(run)
            if cell["pending"] or result is None or cell["metric"] not in result:
                continue
            key = (run, cell["metric"], cell["reference"], cell.get("variant", ""))
            records[key] = {
                "run": run,
                "metric": cell["metric"],
                "value": result[cell["metric"]],
                "num_samples": result["num_samples"],
                "labels": result["labels"],
            }
    return records
