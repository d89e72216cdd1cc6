"""GPU checks and speeds, one section per process (for a lent H100/H200 machine).

    python benchmarks/gpu_suite.py SECTION --out results.json [--smoke] [--weights FILE]

Sections (``all`` runs them in this order, each in its own process with a time limit):

* ``env``: torch, CUDA and the device;
* ``consistency``: the networks and ScoreMix give the same numbers on the GPU as on the CPU
  (strict fp32), and demo-scale training (score network, then StyleGAN2 with DiffAugment and
  online ScoreMix, with MixDL in TF32 and in bf16 channels-last, and CDC in bf16
  channels-last) and the NCSNv2 sampler run on the GPU;
* ``scoremix``: Algorithm 1 at 256² with the full-size score network (ngf 128): images per
  second per batch size and numeric precision, and the augment rule's own code path
  (``make_augmented_set``) for one batch of 100 steps;
* ``scorenet``: seconds per iteration of score-network training at 256², batch 32;
* ``inception``: Inception-v3 feature throughput (network alone, and the whole clean-fid
  pipeline from a zip of PNGs) and how much TF32/bf16 move FID on the same images;
* ``kernels``: the FIR resampling written four ways (forward and input gradient at D's 256²
  layer), and how far bf16 autocast and NVIDIA's FP16 layers (``precision: fp16``: float16 in
  the 4 highest resolutions, activations clamped at 256) move G's images and D's logits from
  float32 with the same weights;
* ``stylegan2``: sec/kimg and GPU memory of the StyleGAN2 training step at 256², batch 64, on
  synthetic data, per precision (``fp16``: NVIDIA's FP16 layers), memory format and
  ``torch.compile`` (``--variants``, default all; ``--profile`` adds each variant's top GPU
  kernels). What fp16 does to a trained network's FID needs full trainings, not this suite.
* ``fastgan``: sec/kimg and GPU memory of FastGAN's training step at 256², batch 8 (MixDL's
  FastGAN rows), on synthetic data, per precision and memory format, with the MSE and with the
  LPIPS-VGG reconstruction loss (a seeded untrained VGG-16: the same arithmetic).
* ``biggan``: sec/kimg and GPU memory of BigGAN + DiffAug's training step at 128², batch 512
  (ScoreMix Table 4), on synthetic images with random labels of 1,000 classes, per precision
  and memory format; a variant that does not fit says "out of memory".
* ``multigpu``: sec/kimg and peak memory per GPU of the StyleGAN2 step at 256², batch 64
  (split across the processes), per precision (fp32, tf32, bf16, fp16), at 1 and at all
  visible GPUs: each a ``torchrun`` of ``multi_gpu.py`` through the workflow's multi-process
  trainer (``--smoke``: 1 and 2 CPU processes with gloo).

Each section merges its numbers into the ``--out`` JSON as it finishes, so a run cut off at its
time limit keeps what it measured. ``--smoke`` runs every section at toy sizes on the CPU to
check the script itself. ``--weights`` is the Inception file; a ``.fp16.pt`` file (a copy
rounded to float16 so it fits the device machine's upload limit) is expanded to float32 first
and every number computed with it says so.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from mixgan.config import load_config_file, validate_config  # noqa: E402
from mixgan.data.procedural import generate_shapes  # noqa: E402
from mixgan.nets.ncsn import ScoreNet  # noqa: E402
from mixgan.nets.stylegan2 import Discriminator, Generator, count_parameters  # noqa: E402
from mixgan.scores import (  # noqa: E402
    annealed_langevin,
    geometric_sigmas,
    max_pairwise_distance,
    scoremix,
)
from mixgan.study import Study  # noqa: E402
from mixgan.train.scorenet import dsm_step  # noqa: E402

LOG = logging.getLogger("gpu_suite")
SECTIONS = (
    "env", "consistency", "scoremix", "scorenet", "inception", "kernels", "stylegan2", "fastgan",
    "biggan", "multigpu",
)  # fmt: skip
TIME_LIMITS = {
    "env": 30,
    "consistency": 80,
    "scoremix": 105,
    "scorenet": 45,
    "inception": 80,
    "kernels": 60,
    "stylegan2": 400,
    "fastgan": 150,
    "biggan": 240,
    "multigpu": 480,
}
PRECISIONS = ("fp32", "default", "tf32", "bf16")


# -- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def precision(mode: str, device: torch.device) -> Iterator[None]:
    """fp32: no TF32 anywhere; default: PyTorch's defaults (TF32 in cuDNN convolutions only);
    tf32: TF32 in matmuls and convolutions; bf16: tf32 plus bf16 autocast."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if mode == "fp32":
        flags = (False, False)
    elif mode == "default":
        flags = (False, True)
    else:
        flags = (True, True)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if mode == "bf16"
        else contextlib.nullcontext()
    )
    try:
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    tic = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - tic, out


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def losses_finite(rows: list[dict[str, torch.Tensor]]) -> bool:
    """Whether every value of every training step's logged losses is finite."""
    return all(torch.isfinite(v).all().item() for row in rows for v in row.values())


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error)


def merge_result(path: Path, section: str, values: dict[str, Any]) -> None:
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[section] = values
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(path)


def shapes(count: int, resolution: int, classes: int, seed: int) -> np.ndarray:
    """NHWC uint8 procedural images (the demo's generator), made in parallel chunks.

    Worker processes are forked, so call this before CUDA is initialised."""
    chunk = 250
    jobs = [
        (min(chunk, count - start), resolution, classes, 2, seed * 1_000_003 + start)
        for start in range(0, count, chunk)
    ]
    if len(jobs) == 1:
        return generate_shapes(*jobs[0])[0]
    with multiprocessing.get_context("fork").Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        parts = pool.starmap(generate_shapes, jobs)
    return np.concatenate([images for images, _, _ in parts])


def synthetic_pool(count: int, resolution: int) -> torch.Tensor:
    """Uniform random NCHW uint8 images, the synthetic data of NVIDIA's speed measurement."""
    return torch.randint(0, 256, (count, 3, resolution, resolution), dtype=torch.uint8)


def paper_study() -> Study:
    return Study(
        validate_config(load_config_file(REPO / "config" / "config.yaml")), check_paths=False
    )


def demo_study() -> Study:
    return Study(
        validate_config(load_config_file(REPO / "config" / "demo.yaml")), check_paths=False
    )


def gan_trainer(
    spec: dict[str, Any],
    pool: torch.Tensor,
    scorenet: Path | None = None,
    source_model: Path | None = None,
):
    """The run's trainer, its real images ``pool`` (NCHW uint8) instead of a subset zip."""
    from mixgan.train import gan, loop
    from mixgan.train.paths import TrainPaths

    paths = TrainPaths(
        Path("unused.zip"), Path("unused.json"), Path("unused"), Path("unused.pt"),
        Path("unused.csv"), scorenet=scorenet, source_model=source_model,
    )  # fmt: skip
    original = gan.load_real_pool
    gan.load_real_pool = lambda paths, parts: (pool, len(pool))
    try:
        return loop.make_trainer(spec, paths, LOG)
    finally:
        gan.load_real_pool = original


# -- sections ----------------------------------------------------------------------------------


def section_env(ctx: dict[str, Any]) -> dict[str, Any]:
    device = ctx["device"]
    out = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        out.update(
            name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
        )
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        out["nvidia_smi"] = smi.stdout.strip()
    return out


def section_consistency(ctx: dict[str, Any]) -> dict[str, Any]:
    device, out = ctx["device"], {}
    cpu = torch.device("cpu")
    with precision("fp32", device):
        torch.manual_seed(0)
        G = Generator(
            z_dim=64, w_dim=64, mapping_layers=2, c_dim=0, img_resolution=32, img_channels=3,
            channel_base=1024, channel_max=64,
        ).eval()  # fmt: skip
        D = Discriminator(
            c_dim=0, img_resolution=32, img_channels=3, channel_base=1024, channel_max=64,
            mbstd_group_size=4,
        ).eval()  # fmt: skip
        z = torch.randn(8, 64)
        with torch.no_grad():
            img_cpu = G(z, None, noise_mode="const")
            img_dev = G.to(device)(z.to(device), None, noise_mode="const").cpu()
            logits_cpu = D(img_cpu, None)
            logits_dev = D.to(device)(img_cpu.to(device), None).cpu()
        out["generator_max_abs_diff"] = (img_cpu - img_dev).abs().max().item()
        out["discriminator_max_abs_diff"] = (logits_cpu - logits_dev).abs().max().item()

        sigmas = geometric_sigmas(20.0, 0.01, 0.9)
        net = ScoreNet(sigmas, 32, 3, ngf=16).eval().requires_grad_(False)
        x = torch.rand(8, 3, 32, 32)
        levels = torch.randint(len(sigmas), (8,))
        with torch.no_grad():
            score_cpu = net(x, levels)
            score_dev = net.to(device)(x.to(device), levels.to(device)).cpu()
        out["scorenet_max_rel_diff"] = (
            (score_cpu - score_dev).abs().max() / score_cpu.abs().max()
        ).item()

        x1, x2, lam = torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32), torch.rand(8)
        mixed_dev = scoremix(x1.to(device), x2.to(device), net, lam).cpu()
        mixed_cpu = scoremix(x1, x2, net.to(cpu), lam)
        diff = (mixed_cpu - mixed_dev).abs()
        out["scoremix_100_steps_max_abs_diff"] = diff.max().item()
        out["scoremix_100_steps_mean_abs_diff"] = diff.mean().item()

    # Demo-scale training on the device: score network, then StyleGAN2 + DiffAugment + online
    # ScoreMix (growing mu, probability forced to 1 so every D step mixes), then NCSNv2.
    from mixgan.train.scorenet import DEFAULTS, load_score_net, train_score_net

    study = demo_study()
    images = torch.from_numpy(shapes(50, 32, 3, seed=0)).permute(0, 3, 1, 2).contiguous()
    work = Path(tempfile.mkdtemp())
    dataset, subset, scorenet = study.scorenet_jobs()[0]
    scorenet_spec = study.scorenet_spec(dataset, subset, scorenet)
    settings = {key: scorenet_spec[key] for key in DEFAULTS if key in scorenet_spec}
    settings.update(iterations=20, log_every=10, checkpoint_every=20, device=device.type)
    seconds, summary = timed(lambda: train_score_net(images, settings, work, LOG), device)
    out["demo_scorenet_20_iterations_s"] = round(seconds, 2)
    runs = [
        key for key in study.runnable_runs()
        if any(p.get("mu") == "growing" for p in study.method_parts(key.method))
    ]  # fmt: skip
    spec = copy.deepcopy(study.run_spec(runs[0]))
    spec["device"] = device.type
    for part in spec["method"]["parts"]:
        if part["kind"] == "scoremix":
            part["probability"] = 1.0
    spec["method"]["parts"].append(
        {"name": "diffaug_check", "kind": "diffaug", "policy": "color,translation,cutout"}
    )
    trainer = gan_trainer(spec, images, work / "scorenet.pt")
    losses = [trainer.train_step() for _ in range(4)]
    out["demo_gan_run"] = runs[0].id
    out["demo_gan_parts"] = [p.name for p in trainer.parts]
    out["demo_gan_losses_finite"] = losses_finite(losses)
    out["demo_gan_part_stats"] = {part.name: part.stats() for part in trainer.parts}

    # MixDL (odd steps compute their own losses; patch heads and projector trained with D) on
    # the device, in the default arithmetic and in bf16 with channels-last.
    mixdl_run = next(key for key in study.runnable_runs() if key.method == "mixdl")
    for name, arithmetic in (
        ("tf32", {"precision": "tf32"}),
        ("bf16_channels_last", {"precision": "bf16", "channels_last": True}),
    ):
        spec = copy.deepcopy(study.run_spec(mixdl_run))
        spec["device"] = device.type
        spec["backbone"]["train"].update(arithmetic)
        trainer = gan_trainer(spec, images)
        losses = [trainer.train_step() for _ in range(4)]
        out[f"mixdl_{name}_losses_finite"] = losses_finite(losses)
        out[f"mixdl_{name}_stats"] = {part.name: part.stats() for part in trainer.parts}
    # CDC on the device in bf16 with channels-last: its source is the demo's source run's
    # networks after 4 steps (written as the network.pt the workflow would pass).
    cdc_run = next(key for key in study.runnable_runs() if key.method == "cdc")
    source_spec = copy.deepcopy(study.run_spec(study.source_run("cdc")))
    source_spec["device"] = device.type
    source = gan_trainer(source_spec, images)
    for _ in range(4):
        source.train_step()
    torch.save(
        {"arch": "stylegan2", "generator": source.G_ema.state_dict(),
         "generator_last": source.G.state_dict(), "discriminator": source.D.state_dict()},
        work / "source.pt",
    )  # fmt: skip
    spec = copy.deepcopy(study.run_spec(cdc_run))
    spec["device"] = device.type
    spec["backbone"]["train"].update(precision="bf16", channels_last=True, r1_interval=1)
    trainer = gan_trainer(spec, images, source_model=work / "source.pt")
    losses = [trainer.train_step() for _ in range(5)]  # steps 0 and 4 near the anchors
    out["cdc_bf16_channels_last_losses_finite"] = losses_finite(losses)
    out["cdc_bf16_channels_last_stats"] = {part.name: part.stats() for part in trainer.parts}
    net = load_score_net(work / "scorenet.pt", device)
    samples = annealed_langevin(net, 4, steps_each=1)
    out["ncsnv2_sampler_finite_in_range"] = bool(
        torch.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 1
    )
    return out


def section_scoremix(ctx: dict[str, Any]) -> dict[str, Any]:
    from mixgan.augment.scoremix import ScoreMixer, make_augmented_set

    device, smoke = ctx["device"], ctx["smoke"]
    resolution, ngf = (32, 8) if smoke else (256, 128)
    images = torch.from_numpy(shapes(128, resolution, 4, seed=1)).permute(0, 3, 1, 2).contiguous()
    tic = time.perf_counter()
    sigma_max = max_pairwise_distance(images.to(device))
    out: dict[str, Any] = {
        "resolution": resolution,
        "ngf": ngf,
        "data": "procedural shapes (stand-in data; speed does not depend on it)",
        "sigma_max_of_128_images": round(sigma_max, 3),
        "sigma_max_seconds": round(time.perf_counter() - tic, 3),
    }
    sigmas = geometric_sigmas(sigma_max, 0.01, 0.99)
    net = ScoreNet(sigmas, resolution, 3, ngf).to(device).eval().requires_grad_(False)
    out["levels"], out["parameters"] = len(sigmas), count_parameters(net)
    x = images.float() / 255

    def per_step(batch: int, mode: str, memory_format=torch.contiguous_format) -> dict[str, Any]:
        x1 = x[:batch].to(device).contiguous(memory_format=memory_format)
        x2 = x[batch : 2 * batch].to(device).contiguous(memory_format=memory_format)
        lam = torch.rand(batch)
        reset_peak(device)
        with precision(mode, device):
            scoremix(x1, x2, net, lam, steps=2, final_denoise={"mode": "none"})  # warm-up
            probe = 2 if smoke else 6
            seconds, _ = timed(
                lambda: scoremix(x1, x2, net, lam, probe, final_denoise={"mode": "none"}), device
            )
        step = seconds / probe
        return {
            "sec_per_step": round(step, 4),
            "images_per_s_at_100_steps": round(batch / (101 * step), 2),
            "peak_gib": peak_gib(device),
        }

    batches = () if ctx["quick"] else (2, 4) if smoke else (8, 16, 32, 64)
    out["by_batch_default_precision"] = {}
    for batch in batches:
        try:
            out["by_batch_default_precision"][batch] = per_step(batch, "default")
            ctx["save"](out)
        except RuntimeError as error:
            if not is_oom(error):
                raise
            out["by_batch_default_precision"][batch] = "out of memory"
            break
    if not ctx["quick"]:
        for mode in PRECISIONS:
            out[f"batch16_{mode}"] = per_step(16, mode)
            ctx["save"](out)
    steps = 10 if smoke else 100
    # The augment rule's code path, end to end: make_augmented_set, 8 images, 100 steps.
    part = {"mu": 1, "alpha": 0.2, "steps": steps, "lr": 0.005, "seed": 0}
    part["final_denoise"] = {"mode": "sdedit", "t0": 0.25, "steps": None}
    seconds, (augmented, _) = timed(
        lambda: make_augmented_set(images[:8], ScoreMixer(net, steps), part, batch_size=8),
        device,
    )
    rate = len(augmented) / seconds
    out["make_augmented_set_default_precision"] = {
        "images": len(augmented), "batch": 8, "steps": steps, "seconds": round(seconds, 2),
        "images_per_s": round(rate, 3),
        "mu10_of_1000_images_hours": round(10_000 / (rate * steps / 100) / 3600, 2),
    }  # fmt: skip
    ctx["save"](out)
    # How far reduced precision moves the result of the whole algorithm (pixels in [0, 1]).
    x1, x2, lam = x[:4].to(device), x[4:8].to(device), torch.rand(4)
    results = {}
    for mode in ("default", "bf16", "fp32"):
        with precision(mode, device):
            seconds, results[mode] = timed(lambda: scoremix(x1, x2, net, lam, steps=steps), device)
        out[f"batch4_{steps}_steps_{mode}_seconds"] = round(seconds, 2)
        ctx["save"](out)
    for mode in ("default", "bf16"):
        diff = (results[mode] - results["fp32"]).abs()
        out[f"{mode}_vs_fp32_pixel_diff"] = {
            "max": round(diff.max().item(), 5), "mean": round(diff.mean().item(), 6),
        }  # fmt: skip
    return out


def _dsm_training_seconds(
    net: ScoreNet, data: torch.Tensor, batch: int, mode: str, iterations: int
) -> float:
    """Seconds for ``iterations`` of train_score_net's step: DSM loss, Adam, EMA."""
    device = data.device
    torch.manual_seed(0)
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)

    def step() -> None:
        dsm_step(net, ema, optimizer, data[torch.randint(len(data), (batch,))], 0.999)

    with precision(mode, device):
        for _ in range(2):
            step()
        seconds, _ = timed(lambda: [step() for _ in range(iterations)], device)
    return seconds


def section_scorenet(ctx: dict[str, Any]) -> dict[str, Any]:
    device, smoke = ctx["device"], ctx["smoke"]
    resolution, ngf, batch = (32, 8, 4) if smoke else (256, 128, 32)
    images = torch.from_numpy(shapes(64, resolution, 4, seed=2)).permute(0, 3, 1, 2).contiguous()
    sigmas = geometric_sigmas(max_pairwise_distance(images), 0.01, 0.99)
    out: dict[str, Any] = {"resolution": resolution, "ngf": ngf, "batch": batch}
    iterations = 3 if smoke else (4 if ctx["quick"] else 10)
    data = images.to(device).float() / 255
    for mode in ("default", "bf16") if ctx["quick"] else PRECISIONS:
        reset_peak(device)
        seconds = _dsm_training_seconds(
            ScoreNet(sigmas, resolution, 3, ngf), data, batch, mode, iterations
        )
        out[mode] = {
            "sec_per_iteration": round(seconds / iterations, 4),
            "gpu_hours_300k_iterations": round(seconds / iterations * 300_000 / 3600, 2),
            "peak_gib": peak_gib(device),
        }
        ctx["save"](out)
    return out


def _resize_clean(image: np.ndarray) -> np.ndarray:
    from cleanfid.resize import build_resizer

    return build_resizer("clean")(image).transpose(2, 0, 1)


def _write_png_zip(path: Path, images: np.ndarray) -> None:
    import io

    from PIL import Image

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
            archive.writestr(f"{index:06d}.png", buffer.getvalue())


def section_inception(ctx: dict[str, Any]) -> dict[str, Any]:
    from mixgan.metrics.fid_kid import fid_from_features
    from mixgan.metrics.inception import InceptionFeatures

    device, smoke = ctx["device"], ctx["smoke"]
    weights, label = ctx["inception"]
    count, batch = (16, 8) if smoke else ((1500 if ctx["quick"] else 3000), 500)
    out: dict[str, Any] = {"weights": label, "images_per_set": count, "batch": batch}
    tic = time.perf_counter()
    set_a = shapes(count, 256, 3, seed=3)
    set_b = shapes(count, 256, 4, seed=4)
    out["make_images_s"] = round(time.perf_counter() - tic, 1)
    workers = min(16, os.cpu_count() or 1)
    tic = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        resized = [
            torch.from_numpy(np.stack(pool.map(_resize_clean, list(s), chunksize=32)))
            for s in (set_a, set_b)
        ]
    seconds = time.perf_counter() - tic
    out["clean_resize_images_per_s"] = {"workers": workers, "value": round(2 * count / seconds, 1)}

    extractor = InceptionFeatures(weights, device=device.type, batch_size=batch)
    features: dict[str, list[np.ndarray]] = {}
    for mode in ("fp32", "default", "tf32", "bf16"):
        with precision(mode, device), torch.no_grad():
            extractor(resized[0][:batch])  # warm-up
            feats, seconds = [], 0.0
            for images in resized:
                chunks = []
                for start in range(0, count, batch):
                    part = images[start : start + batch].to(device, non_blocking=True).float()
                    took, f = timed(lambda p=part: extractor(p), device)
                    seconds += took
                    chunks.append(f.float().cpu().numpy().astype(np.float64))
                feats.append(np.concatenate(chunks))
        features[mode] = feats
        out[f"network_{mode}"] = {
            "images_per_s": round(2 * count / seconds, 1),
            "fid_a_b": round(fid_from_features(*feats), 4),
            "fid_a_first_half_vs_second_half": round(
                fid_from_features(feats[0][: count // 2], feats[0][count // 2 :]), 4
            ),
        }
        ctx["save"](out)
    for mode in ("default", "tf32", "bf16"):
        out[f"network_{mode}"]["fid_change_vs_fp32"] = round(
            out[f"network_{mode}"]["fid_a_b"] - out["network_fp32"]["fid_a_b"], 5
        )
        out[f"network_{mode}"]["max_feature_diff_vs_fp32"] = float(
            np.abs(features[mode][0] - features["fp32"][0]).max()
        )

    if ctx["quick"]:
        return out
    # The whole pipeline the metric rules run: PNGs in a zip -> clean resize -> features.
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / "a.zip"
        _write_png_zip(zip_path, set_a)
        extractor.batch_size = 250 if not smoke else 8
        for mode in ("default", "tf32"):
            with precision(mode, device):
                seconds, (feats, _) = timed(lambda: extractor.of_zip(zip_path), device)
            out[f"pipeline_{mode}"] = {
                "images_per_s": round(count / seconds, 1),
                "seconds_for_50k_extrapolated": round(50_000 * seconds / count, 1),
                "max_feature_diff_vs_network_fp32": float(
                    np.abs(feats - features["fp32"][0]).max()
                ),
            }
            ctx["save"](out)
    return out


def _stylegan2_spec(ctx: dict[str, Any]) -> dict[str, Any]:
    study = paper_study()
    baseline = next(
        key for key in study.runnable_runs()
        if key.backbone == "stylegan2" and not study.method_parts(key.method)
    )  # fmt: skip
    spec = copy.deepcopy(study.run_spec(baseline))
    spec["device"] = ctx["device"].type
    spec["run"] = baseline.id
    if ctx["smoke"]:
        spec["resolution"] = 32
        spec["backbone"].update(channel_base=512, channel_max=32)
        spec["backbone"]["train"]["batch"] = 8
    return spec


def _time_trainer(trainer, steps: int, device: torch.device, warm: int = 3) -> dict[str, Any]:
    """Seconds per kimg over ``steps`` steps after ``warm`` warm-up steps (the first holds a lazy
    R1 and a path-length step, cuDNN's autotuning and any compilation); logs every step."""
    batch = trainer.train_cfg["batch"]
    reset_peak(device)
    step_seconds, rows = [], []
    for index in range(warm + steps):
        seconds, row = timed(trainer.train_step, device)
        step_seconds.append(seconds)
        rows.append(row)
        LOG.info("step %d (%s): %.3f s", index, "warm-up" if index < warm else "timed", seconds)
    timed_seconds = sum(step_seconds[warm:])
    cfg = trainer.train_cfg
    timed_steps = range(trainer.step - steps, trainer.step)
    return {
        "sec_per_kimg": round(timed_seconds / (steps * batch / 1000), 2),
        "steps_timed": steps,
        "r1_steps_included": sum(
            1 for s in timed_steps if cfg["r1_gamma"] > 0 and s % cfg["r1_interval"] == 0
        ),
        "pl_steps_included": sum(
            1 for s in timed_steps if cfg["pl_weight"] > 0 and s % cfg["pl_interval"] == 0
        ),
        "warmup_s": [round(x, 2) for x in step_seconds[:warm]],
        "step_s": [round(x, 3) for x in step_seconds[warm:]],
        "peak_gib": peak_gib(device),
        "losses_finite": losses_finite(rows[warm:]),
    }


def _top_kernels(trainer, device: torch.device, steps: int = 1, rows: int = 30) -> list[str]:
    """The GPU kernels (or CPU ops) taking the most time over ``steps`` training steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step()
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return (
        prof.key_averages()
        .table(sort_by=sort, row_limit=rows, max_name_column_width=70)
        .split("\n")
    )


def _variant(precision, channels_last=False, compile=False, fused_fir=False, autotune=True):
    return {
        "train": {
            "precision": precision,
            "channels_last": channels_last,
            "compile": compile,
            "fused_fir": fused_fir,
        },
        "cudnn_autotune": autotune,
    }


STYLEGAN2_VARIANTS = {
    "tf32": _variant("tf32"),
    "tf32_no_autotune": _variant("tf32", autotune=False),
    "tf32_channels_last": _variant("tf32", channels_last=True),
    "bf16": _variant("bf16"),
    "bf16_channels_last": _variant("bf16", channels_last=True),
    "fp32": _variant("fp32"),
    "fp16": _variant("fp16"),  # StyleGAN2-ADA's: FP16 in the 4 highest resolutions, clamp 256
    "tf32_fused": _variant("tf32", fused_fir=True),
    "bf16_fused": _variant("bf16", fused_fir=True),
    "bf16_channels_last_fused": _variant("bf16", channels_last=True, fused_fir=True),
    "tf32_compiled": _variant("tf32", compile=True),
    "bf16_compiled": _variant("bf16", compile=True),
    "bf16_channels_last_compiled": _variant("bf16", channels_last=True, compile=True),
}


def section_stylegan2(ctx: dict[str, Any]) -> dict[str, Any]:
    """sec/kimg of the training step at 256², batch 64, per precision, memory format and
    compilation (``--variants``), on NVIDIA's synthetic data; ``--profile`` adds the top
    kernels of each variant."""
    device, smoke = ctx["device"], ctx["smoke"]
    spec = _stylegan2_spec(ctx)
    pool = synthetic_pool(32 if smoke else 1000, spec["resolution"])
    backbone = spec["backbone"]
    out: dict[str, Any] = {
        "run": spec["run"],
        "resolution": spec["resolution"],
        "batch": backbone["train"]["batch"],
        "channel_base": backbone["channel_base"],
        "mbstd_group": backbone["mbstd_group"],
        "r1_interval": backbone["train"]["r1_interval"],
        "pl_weight": backbone["train"]["pl_weight"],
        "pl_interval": backbone["train"]["pl_interval"],
        "data": "uniform random uint8 (synthetic)",
    }
    steps = 4 if smoke else ctx["steps"]  # 16 = 1.024 kimg at batch 64: one R1, four PL steps
    for name in ctx["variants"]:
        variant = STYLEGAN2_VARIANTS[name]
        backbone["train"].update(variant["train"])
        LOG.info("variant %s", name)
        torch.manual_seed(0)
        trainer = gan_trainer(spec, pool)
        torch.backends.cudnn.benchmark = variant["cudnn_autotune"]
        out.setdefault(
            "parameters", {"G": count_parameters(trainer.G), "D": count_parameters(trainer.D)}
        )
        out[name] = _time_trainer(trainer, steps, device)
        if ctx["profile"]:
            out[name]["top_kernels"] = _top_kernels(trainer, device)
        ctx["save"](out)
        del trainer
        torch._dynamo.reset()
    return out


FASTGAN_VARIANTS = {
    "tf32": _variant("tf32"),
    "bf16": _variant("bf16"),
    "bf16_channels_last": _variant("bf16", channels_last=True),
    "fp32": _variant("fp32"),
}


def section_fastgan(ctx: dict[str, Any]) -> dict[str, Any]:
    """sec/kimg of FastGAN's training step at 256², batch 8, per precision and memory format,
    with the MSE and with the LPIPS-VGG reconstruction loss, on synthetic data."""
    from mixgan.metrics.lpips_distance import load_lpips
    from mixgan.train.fastgan import lpips_distance

    device, smoke = ctx["device"], ctx["smoke"]
    study = paper_study()
    run = next(
        key for key in study.runs
        if key.backbone == "fastgan" and not study.method_parts(key.method)
    )  # fmt: skip
    spec = copy.deepcopy(study.run_spec(run))
    spec.update(device=device.type, run=run.id)
    spec["backbone"]["reconstruction"] = "mse"
    if smoke:
        spec["resolution"] = 32
        spec["backbone"].update(ngf=8, ndf=8)
    backbone = spec["backbone"]
    pool = synthetic_pool(32 if smoke else 1000, spec["resolution"])
    vgg, _ = load_lpips("vgg", None, allow_stand_in=True)
    out: dict[str, Any] = {
        "run": spec["run"],
        "resolution": spec["resolution"],
        "batch": backbone["train"]["batch"],
        "ngf": backbone["ngf"],
        "ndf": backbone["ndf"],
        "data": "uniform random uint8 (synthetic)",
        "lpips_vgg": "seeded untrained VGG-16 (timing only: the same arithmetic as the real one)",
    }
    steps = 4 if smoke else 4 * ctx["steps"]  # 64 steps = 0.512 kimg at batch 8
    for name, variant in FASTGAN_VARIANTS.items():
        backbone["train"].update(variant["train"])
        for loss in ("mse", "lpips"):
            LOG.info("variant %s, %s reconstruction", name, loss)
            torch.manual_seed(0)
            trainer = gan_trainer(spec, pool)
            torch.backends.cudnn.benchmark = variant["cudnn_autotune"]
            if loss == "lpips":
                trainer.distance = lpips_distance(vgg.to(device))
            out.setdefault(
                "parameters", {"G": count_parameters(trainer.G), "D": count_parameters(trainer.D)}
            )
            out[f"{name}_{loss}"] = _time_trainer(trainer, steps, device)
            ctx["save"](out)
            del trainer
    return out


def section_biggan(ctx: dict[str, Any]) -> dict[str, Any]:
    """sec/kimg and GPU memory of BigGAN + DiffAug's training step at 128², batch 512, per
    precision and memory format, on synthetic images with random labels."""
    from mixgan.train import biggan

    device, smoke = ctx["device"], ctx["smoke"]
    study = paper_study()
    run = next(key for key in study.runnable_runs() if key.backbone == "biggan")
    spec = copy.deepcopy(study.run_spec(run))
    spec.update(device=device.type, run=run.id)
    classes = 10 if smoke else 1000
    if smoke:
        spec["resolution"] = 32
        spec["backbone"].update(ch=4, attention=[16])
        spec["backbone"]["train"]["batch"] = 8
    pool = synthetic_pool(32 if smoke else 2048, spec["resolution"])
    labels = torch.randint(classes, (len(pool),), generator=torch.Generator().manual_seed(0))
    backbone = spec["backbone"]
    out: dict[str, Any] = {
        "run": spec["run"],
        "method": [p["name"] for p in spec["method"]["parts"]],
        "resolution": spec["resolution"],
        "batch": backbone["train"]["batch"],
        "ch": backbone["ch"],
        "classes": classes,
        "data": "uniform random uint8 (synthetic), uniform random labels",
    }
    # The trainer reads classes from the data zip and the subset manifest; give it ours.
    original = biggan.class_names, biggan.read_subset_labels
    biggan.class_names = lambda data_zip: [str(c) for c in range(classes)]
    biggan.read_subset_labels = lambda manifest: labels
    steps = 2 if smoke else max(ctx["steps"] // 2, 2)  # 8 steps of 512 = 4.1 kimg
    try:
        for name, variant in FASTGAN_VARIANTS.items():
            backbone["train"].update(variant["train"])
            LOG.info("variant %s", name)
            torch.manual_seed(0)
            try:
                trainer = gan_trainer(spec, pool)
                torch.backends.cudnn.benchmark = variant["cudnn_autotune"]
                out.setdefault(
                    "parameters",
                    {"G": count_parameters(trainer.G), "D": count_parameters(trainer.D)},
                )
                out[name] = _time_trainer(trainer, steps, device, warm=2)
            except RuntimeError as error:
                if not is_oom(error):
                    raise
                out[name] = "out of memory"
            trainer = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            ctx["save"](out)
    finally:
        biggan.class_names, biggan.read_subset_labels = original
    return out


def _fir_package(x, f, up=1, down=1, padding=(0, 0), gain=1.0):
    """The package's upfirdn2d: one grouped convolution with the 2-D filter (transposed for
    upsampling), with the adjoint FIR resampling as its backward pass."""
    from mixgan.nets.stylegan2 import upfirdn2d

    return upfirdn2d(x, f, up, down, padding, gain)


def _fir_prepare(x, f, up, padding, gain):
    """The package's zero insertion and padding, and the flipped 1-D taps (each axis gets
    the square root of ``gain``) for a correlation."""
    from mixgan.nets.stylegan2 import upsample_and_pad

    x = upsample_and_pad(x, up, (padding[0], padding[1], padding[0], padding[1]))
    return x, (f.flip(0) * gain**0.5).to(x.dtype)


def _fir_two_1d(x, f, up=1, down=1, padding=(0, 0), gain=1.0):
    """Two grouped 1-D convolutions, one per axis (the package's choice until 2026-11-27)."""
    x, taps = _fir_prepare(x, f, up, padding, gain)
    c, k = x.shape[1], taps.numel()
    x = torch.nn.functional.conv2d(
        x, taps.reshape(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, down), groups=c
    )
    return torch.nn.functional.conv2d(
        x, taps.reshape(1, 1, k, 1).expand(c, 1, k, 1), stride=(down, 1), groups=c
    )


def _fir_channels_as_batch(x, f, up=1, down=1, padding=(0, 0), gain=1.0):
    """Channels folded into the batch: one single-channel 4x4 convolution."""
    x, taps = _fir_prepare(x, f, up, padding, gain)
    n, c, h, w = x.shape
    k = taps.numel()
    weight = torch.outer(taps, taps).reshape(1, 1, k, k)
    y = torch.nn.functional.conv2d(x.reshape(n * c, 1, h, w), weight, stride=down)
    return y.reshape(n, c, *y.shape[2:])


def _fir_box_cascade(x, f, up=1, down=1, padding=(0, 0), gain=1.0):
    """[1, 3, 3, 1] only: its 2-D filter is three 2x2 box filters, i.e. three average pools."""
    if up != 1 or f.numel() != 4 or not torch.allclose(f, torch.tensor([1, 3, 3, 1]).to(f) / 8):
        raise ValueError("the box cascade is the [1, 3, 3, 1] filter without upsampling")
    x, _ = _fir_prepare(x, f, up, padding, gain)
    x = torch.nn.functional.avg_pool2d(x, 2, stride=1)
    x = torch.nn.functional.avg_pool2d(x, 2, stride=1)
    return torch.nn.functional.avg_pool2d(x, 2, stride=down) * gain


def _fir_fused(x, f, up=1, down=1, padding=(0, 0), gain=1.0):
    """The package's upfirdn2d through the fused Triton kernel, forward and backward (the
    kernels section switches it on for this implementation only)."""
    from mixgan.nets import fused_fir
    from mixgan.nets.stylegan2 import upfirdn2d

    if not fused_fir.available(x):
        raise ValueError("the fused kernel needs a CUDA device and Triton")
    return upfirdn2d(x, f, up, down, padding, gain)


FIR_IMPLEMENTATIONS = {
    "package": _fir_package,
    "fused": _fir_fused,
    "two_1d_grouped": _fir_two_1d,
    "channels_as_batch": _fir_channels_as_batch,
    "box_cascade": _fir_box_cascade,
}


# operation: (upfirdn2d arguments, input shape, smoke input shape); "blur_then_slice" is the
# operation timed on 2026-11-27 (D's 256² layer, before the stride-2 convolution)
FIR_OPERATIONS = {
    "blur_then_slice": ({"padding": (2, 1)}, (64, 64, 256, 256), (4, 8, 32, 32)),
    "down2": ({"down": 2, "padding": (1, 1)}, (64, 64, 256, 256), (4, 8, 32, 32)),
    "up2": ({"up": 2, "padding": (2, 1), "gain": 4.0}, (64, 64, 128, 128), (4, 8, 16, 16)),
}


def section_kernels(ctx: dict[str, Any]) -> dict[str, Any]:
    """FIR resampling implementations (forward + input gradient at D's and G's 256² layers, ms
    per call) and how far bf16 autocast moves G's images and D's logits from float32 at 256²."""
    from mixgan.nets.stylegan2 import fir_filter, use_fused_fir

    device, smoke = ctx["device"], ctx["smoke"]
    f = fir_filter().to(device)
    out: dict[str, Any] = {"fir": {}}
    torch.backends.cudnn.benchmark = True
    for operation, (kwargs, full_shape, smoke_shape) in FIR_OPERATIONS.items():
        shape = smoke_shape if smoke else full_shape
        x = torch.randn(shape, device=device)
        subsample = operation == "blur_then_slice"
        reference = _fir_package(x, f, **kwargs)
        rows = out["fir"].setdefault(operation, {"input_shape": list(shape)})
        for name, fn in FIR_IMPLEMENTATIONS.items():
            use_fused_fir(name == "fused")
            try:
                error = (fn(x, f, **kwargs) - reference).abs().max().item()
            except ValueError as unsupported:
                rows[name] = {"unsupported": str(unsupported)}
                continue
            row = rows[name] = {"max_abs_diff_vs_package": error}
            for dtype in (torch.float32, torch.bfloat16):
                for fmt in (torch.contiguous_format, torch.channels_last):
                    xin = x.to(dtype).contiguous(memory_format=fmt).requires_grad_(True)

                    def step(fn=fn, xin=xin, kwargs=kwargs, subsample=subsample):
                        for _ in range(10):
                            y = fn(xin, f, **kwargs)
                            y = y[:, :, ::2, ::2] if subsample else y
                            (grad,) = torch.autograd.grad(y.float().sum(), xin)
                        return grad

                    step()
                    seconds, _ = timed(step, device)
                    layout = "nhwc" if fmt is torch.channels_last else "nchw"
                    key = f"{str(dtype).split('.')[-1]}_{layout}"
                    row[key + "_ms"] = round(seconds * 100, 3)
            ctx["save"](out)
    use_fused_fir(False)

    spec = _stylegan2_spec(ctx)
    trainer = gan_trainer(spec, synthetic_pool(8, spec["resolution"]))
    z = torch.randn(8, trainer.G.z_dim, device=device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        images = trainer.G(z, noise_mode="const")
        logits = trainer.D(images)
        with torch.autocast(device.type, torch.bfloat16):
            images_bf16 = trainer.G(z, noise_mode="const").float()
            logits_bf16 = trainer.D(images).float()
    out["bf16_vs_fp32_untrained_256"] = {
        "image_max_abs_diff": (images_bf16 - images).abs().max().item(),
        "image_mean_abs_diff": (images_bf16 - images).abs().mean().item(),
        "image_std": images.std().item(),
        "logit_max_abs_diff": (logits_bf16 - logits).abs().max().item(),
        "logit_std": logits.std().item(),
    }
    # NVIDIA's FP16 layers (precision fp16) with the same weights, conv_clamp 256 included
    from mixgan.train.gan import network_kwargs

    g_kwargs, d_kwargs = network_kwargs(spec, "fp16")
    G16, D16 = Generator(**g_kwargs).to(device), Discriminator(**d_kwargs).to(device)
    G16.load_state_dict(trainer.G.state_dict())
    D16.load_state_dict(trainer.D.state_dict())
    with torch.no_grad():
        images_fp16 = G16(z, noise_mode="const")
        logits_fp16 = D16(images)
    out["fp16_vs_fp32_untrained_256"] = {
        "image_max_abs_diff": (images_fp16 - images).abs().max().item(),
        "image_mean_abs_diff": (images_fp16 - images).abs().mean().item(),
        "logit_max_abs_diff": (logits_fp16 - logits).abs().max().item(),
        "fp16_resolutions": sorted(
            res for res in G16.synthesis.block_resolutions if G16.synthesis.block(res).use_fp16
        ),
    }
    return out


def section_multigpu(ctx: dict[str, Any]) -> dict[str, Any]:
    """The StyleGAN2 step per precision at 1 and at all visible GPUs (``multi_gpu.py`` under
    torchrun); ``<precision>_x<processes>`` per measurement."""
    smoke = ctx["smoke"]
    counts = sorted({1, 2 if smoke else torch.cuda.device_count()})
    out: dict[str, Any] = {"visible_gpus": torch.cuda.device_count()}
    for processes in counts:
        for name in ("fp32",) if smoke else ("fp32", "tf32", "bf16", "fp16"):
            with tempfile.TemporaryDirectory() as tmp:
                part = Path(tmp) / "part.json"
                command = [
                    sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}", str(REPO / "benchmarks" / "multi_gpu.py"),
                    "--precision", name, "--out", str(part), "--steps", str(ctx["steps"]),
                ] + (["--smoke"] if smoke else [])  # fmt: skip
                done = subprocess.run(command, check=False)
                out[f"{name}_x{processes}"] = (
                    json.loads(part.read_text()) if part.is_file() else {"error": done.returncode}
                )
            ctx["save"](out)
    return out


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "env": section_env,
    "consistency": section_consistency,
    "scoremix": section_scoremix,
    "scorenet": section_scorenet,
    "inception": section_inception,
    "kernels": section_kernels,
    "stylegan2": section_stylegan2,
    "fastgan": section_fastgan,
    "biggan": section_biggan,
    "multigpu": section_multigpu,
}


def inception_weights(path: Path | None) -> tuple[Path | None, str]:
    """The float32 Inception file to use and how to label numbers computed with it."""
    from mixgan.io import sha256_file, write_json
    from mixgan.metrics.weights import INCEPTION_FILE, record_path

    if path is None:
        return None, "none"
    if not path.name.endswith(".fp16.pt"):
        return path, "real weights"
    expanded = Path(tempfile.gettempdir()) / "gpu_suite_weights" / INCEPTION_FILE
    if not expanded.is_file():
        expanded.parent.mkdir(parents=True, exist_ok=True)
        module = torch.jit.load(str(path), map_location="cpu").float()
        torch.jit.save(module, str(expanded))
        write_json(record_path(expanded), {"sha256": sha256_file(expanded), "stand_in": False})
    return expanded, "real Inception weights rounded to float16 (carried copy), run in float32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=(*SECTIONS, "all"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--weights", type=Path, help="Inception weights (.pt or .fp16.pt)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="for all: which, in order")
    parser.add_argument("--quick", action="store_true", help="fewer variants per section")
    parser.add_argument(
        "--variants", default=",".join(STYLEGAN2_VARIANTS), help="stylegan2: which, in order"
    )
    parser.add_argument("--profile", action="store_true", help="stylegan2: top kernels too")
    parser.add_argument("--steps", type=int, default=16, help="stylegan2: timed steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.section == "all":
        for section in args.sections.split(","):
            command = [sys.executable, __file__, section, "--out", str(args.out)]
            command += ["--smoke"] if args.smoke else []
            command += ["--quick"] if args.quick else []
            command += ["--variants", args.variants, "--steps", str(args.steps)]
            command += ["--profile"] if args.profile else []
            command += ["--weights", str(args.weights)] if args.weights else []
            tic = time.perf_counter()
            try:
                done = subprocess.run(command, timeout=TIME_LIMITS[section], check=False)
                status = f"exit {done.returncode}"
            except subprocess.TimeoutExpired:
                status = f"stopped at its {TIME_LIMITS[section]} s limit"
            print(f"== {section}: {status} after {time.perf_counter() - tic:.0f} s", flush=True)
        return
    if args.section == "inception" and args.weights is None:
        parser.error("the inception section needs --weights")
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if args.smoke:
        torch.set_num_threads(2)
    ctx = {
        "device": device,
        "smoke": args.smoke,
        "quick": args.quick,
        "variants": [name for name in args.variants.split(",") if name],
        "profile": args.profile,
        "steps": args.steps,
        "inception": inception_weights(args.weights),
        "save": lambda partial: merge_result(args.out, args.section, {**partial, "partial": True}),
    }
    tic = time.perf_counter()
    values = RUNNERS[args.section](ctx)
    values["section_seconds"] = round(time.perf_counter() - tic, 1)
    merge_result(args.out, args.section, values)
    print(json.dumps({args.section: values}, indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
