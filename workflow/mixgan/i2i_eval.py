"""StarGAN v2 runs scored by the official protocol, and the translation sample grid.

:func:`evaluate_run` writes the records of a run (``fid_latent``, ``fid_reference`` and, with
AlexNet weights, ``lpips_latent``, ``lpips_reference``) in the record format the tables read
(``mixgan.metrics._record``): for every ordered pair of domains, the EMA networks translate
each source image ``num_outs`` times (``mixgan.train.stargan2_eval``); LPIPS-AlexNet is the
mean pairwise distance of a source's outputs, FID compares a task's outputs with the target
domain's images of the whole prepared dataset (the official ``train_img_dir``, eval.py:130)
in Inception features (the dataset's cached reference features); each value is the mean over
the 6 tasks, as the papers report.

Deviation (recorded in every record's ``protocol``): the sources and references are the
prepared dataset's images (AFHQ's ``train`` split), not its ``val`` split, optionally the
first ``eval_sources`` per domain in a seeded order (the demo's budget).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixgan import registry
from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.i2i_settings import stargan2_options
from mixgan.io import read_json, write_json
from mixgan.metrics import _record, lpips_input, lpips_network, record_labels
from mixgan.metrics.features import load_features
from mixgan.metrics.fid_kid import fid_from_features
from mixgan.metrics.inception import InceptionFeatures, pick_device
from mixgan.metrics.lpips_distance import lpips_pairs
from mixgan.nets.stargan2 import StarGANv2Config, StarGANv2Nets, build_nets
from mixgan.train.stargan2_eval import MODES, evaluate_translations, lpips_summary


def load_ema_networks(path: str | Path, device: torch.device) -> tuple[StarGANv2Nets, list[str]]:
    """The EMA generator, mapping network and style encoder of a run's network.pt, and its
    domain names."""
    snapshot = torch.load(path, map_location="cpu", weights_only=False)
    if snapshot.get("arch") != "stargan2":
        raise ValueError(f"{path}: not a StarGAN v2 network (arch {snapshot.get('arch')!r})")
    nets = build_nets(StarGANv2Config(**snapshot["config"]), discriminator=False)
    for name, module in nets.items():
        module.load_state_dict(snapshot["nets_ema"][name])
        module.to(device).eval().requires_grad_(False)
    return nets, list(snapshot["domains"])


def domain_images(data_zip: str | Path, names: list[str]) -> dict[str, Tensor]:
    """Every prepared image (NCHW uint8) by domain name (the class labels)."""
    prepared = read_json(Path(data_zip).with_suffix(".json"))
    if prepared.get("class_names") != names:
        raise ValueError(
            f"{data_zip}: domains {prepared.get('class_names')} but the network has {names}"
        )
    images = to_tensor(read_image_zip(data_zip, [image["name"] for image in prepared["images"]]))
    labels = torch.tensor([image["label"] for image in prepared["images"]])
    return {name: images[labels == index] for index, name in enumerate(names)}


def evaluation_sources(images: dict[str, Tensor], count: int, seed: int) -> dict[str, Tensor]:
    """[-1, 1] images of each domain: all, or the first ``count`` of a seeded order."""
    rng = torch.Generator().manual_seed(seed)
    chosen = {}
    for name, domain in images.items():
        order = torch.randperm(len(domain), generator=rng)
        keep = order[:count] if count > 0 else torch.arange(len(domain))
        chosen[name] = domain[keep].float() / 127.5 - 1
    return chosen


def _nhwc(images: Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def evaluate_run(
    spec: dict[str, Any],
    network: Path,
    data_zip: Path,
    inception_weights: Path,
    reference: tuple[Path, Path],
    lpips_weights: Path | None,
    outputs: dict[str, Path],
) -> dict[str, float]:
    """Write the run's records (``outputs``: metric -> path; LPIPS needs ``lpips_weights``);
    return their values. ``reference``: the cached Inception features of the whole prepared
    dataset (under the record's resize) and the manifest giving their images' domains."""
    unknown = set(outputs) - set(registry.I2I_METRICS)
    if unknown or (lpips_weights is None and any(m.startswith("lpips") for m in outputs)):
        raise ValueError(f"cannot write {sorted(outputs)} (LPIPS needs its AlexNet weights)")
    options, device = stargan2_options(spec["backbone"]), pick_device(spec["device"])
    nets, names = load_ema_networks(network, device)
    images = domain_images(data_zip, names)
    sources = evaluation_sources(images, options["eval_sources"], spec["seed"])
    inception = InceptionFeatures(inception_weights, spec["device"], resize=spec["resize"])
    features, _ = load_features(reference[0], "pool")
    labels = np.array([image["label"] for image in read_json(reference[1])["images"]])
    if len(labels) != len(features):
        raise ValueError(f"{reference[0]}: {len(features)} features, {reference[1]} {len(labels)}")
    real = {name: features[labels == index] for index, name in enumerate(names)}
    module, lpips_record = (
        lpips_network("alex", lpips_weights, spec["device"]) if lpips_weights else (None, {})
    )

    def distance(a: Tensor, b: Tensor) -> Tensor:
        return lpips_pairs(module, lpips_input(a), lpips_input(b))

    protocol = {
        "num_outs": options["num_outs"], "batch_size": options["eval_batch"],
        "sources_per_domain": {n: len(s) for n, s in sources.items()},
        "sources": "the prepared dataset's images (not a val split)",
        "fid_reference_set": "every prepared image of the target domain", "resize": spec["resize"],
    }  # fmt: skip
    values = {}
    for mode in MODES:
        results = list(
            evaluate_translations(
                nets, sources, mode, spec["seed"], distance if module else None,
                options["num_outs"], options["eval_batch"],
            )
        )  # fmt: skip
        fids = {
            r.task: fid_from_features(inception.of_arrays(_nhwc(r.images)), real[names[r.target]])
            for r in results
        }
        per_metric = {f"fid_{mode}": (float(np.mean(list(fids.values()))), fids, inception.record)}
        if module is not None:
            lpips = lpips_summary(results, mode)
            per_metric[f"lpips_{mode}"] = (lpips[f"LPIPS_{mode}/mean"], lpips, lpips_record)
        for metric, (value, tasks, network_record) in per_metric.items():
            if metric not in outputs:
                continue
            record_spec = {**spec, "metric": metric, "reference": "none", "variant": ""}
            record = _record(
                record_spec, value, record_labels(spec, network_record),
                num_samples=int(sum(len(r.images) for r in results)), num_reference=None,
                feature_network=network_record, tasks=tasks, protocol=protocol,
            )  # fmt: skip
            write_json(outputs[metric], record)
            values[metric] = value
    return values


def sample_grid(
    networks: dict[str, Path], data_zip: Path, count: int, seed: int, device: str
) -> tuple[list[str], list[np.ndarray]]:
    """Figures 7–8: per method (label -> network.pt), an image of ``count`` sources (rows,
    cycling through the domains) translated with one reference of each domain (columns): the
    top row the references, the left column the sources. Returns (labels, HWC uint8 images)."""
    torch_device = pick_device(device)
    labels, mosaics = [], []
    for label, path in networks.items():
        nets, names = load_ema_networks(path, torch_device)
        domains = evaluation_sources(domain_images(data_zip, names), 0, seed)
        refs = torch.stack([domains[name][0] for name in names])
        srcs = torch.stack(
            [domains[names[i % len(names)]][1 + i // len(names)] for i in range(count)]
        )
        y = torch.arange(len(names), device=torch_device)
        with torch.no_grad():
            style = nets.style_encoder(refs.to(torch_device), y)
            rows = [torch.cat([torch.full_like(refs[0], 1.0), *refs.unbind()], dim=2)]
            for src in srcs:
                batch = src.expand(len(names), -1, -1, -1).to(torch_device)
                out = nets.generator(batch, style).cpu().clamp(-1, 1)
                rows.append(torch.cat([src, *out.unbind()], dim=2))
        mosaic = torch.cat(rows, dim=1)
        mosaics.append(((mosaic + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
        labels.append(label)
    return labels, mosaics
