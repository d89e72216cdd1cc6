"""StarGAN v2's evaluation protocol (clovaai/stargan-v2 ``metrics/eval.py``), without files.

For every target domain (domains in sorted name order, eval.py:31-32, the label being the
position, as ``ImageFolder``'s) and every other domain as source (eval.py:37-38), the EMA
networks translate each validation image of the source domain ``num_outs`` = 10 times
(main.py:133 ``--num_outs_per_domain``), in batches of ``batch_size`` = 32 source images
(main.py:121 ``--val_batch_size``) taken in a random order (``get_eval_loader`` shuffles by
default, data_loader.py:124; the last batch may be smaller, eval.py:50-53):

* latent-guided: each of the 10 outputs of a batch gets new latents z ~ N(0, I) through the
  mapping network's target head (eval.py:71-73);
* reference-guided: each of the 10 outputs of a batch gets the next batch of reference images
  of the target domain's validation set, through the style encoder's target head
  (eval.py:74-83). The reference batches come from one stream per target domain, shared by
  its source domains: shuffled, full batches only (``drop_last=True``, eval.py:42-46),
  reshuffled when exhausted, cut to the first N when the source batch has N < 32 images.

LPIPS of a batch is the mean over the 45 pairs of its 10 outputs of the LPIPS distance averaged
over the batch (metrics/lpips.py ``calculate_lpips_given_images``), i.e. the batch's mean of
each source image's mean pairwise distance; a task's LPIPS is the plain mean over its batches
(eval.py:95-100, so a smaller last batch counts as much as a full one), and the reported value
the mean over the tasks (eval.py:108-112). LPIPS is computed on the raw generator outputs.

FID (eval.py:122-143) compares each task's generated images, written as PNGs by
``utils.save_image`` (:func:`quantize` reproduces its rounding), with the *training* images
of the target domain (``train_img_dir``, eval.py:130), and is averaged over the tasks; that is
the workflow's job: these functions return the images.

Randomness comes from one seeded ``torch.Generator`` drawn in the official order (a source
permutation per task, then per batch and output the latents or the reference stream's
permutations); the official code draws the same quantities from the global RNG seeded once by
main.py:35 (its README reports the mean of 10 seeds), so its exact draws are not reproduced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from mixgan.nets.stargan2 import Generator, MappingNetwork, StarGANv2Nets, StyleEncoder

#: outputs per source image (main.py:133 ``--num_outs_per_domain``)
NUM_OUTS = 10
#: source and reference images per batch (main.py:121 ``--val_batch_size``)
BATCH_SIZE = 32
MODES = ("latent", "reference")

Distance = Callable[[Tensor, Tensor], Tensor]


def quantize(images: Tensor) -> Tensor:
    """NCHW [-1, 1] -> uint8, as the official PNGs (core/utils.py ``denormalize`` then
    torchvision's ``save_image``: clamp to [0, 1], x 255 + 0.5, clamp, truncate)."""
    scaled = ((images.detach().float() + 1) / 2).clamp(0, 1)
    return scaled.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).cpu()


class ReferenceStream:
    """Batches of reference indices as the official reference loader yields them: a random
    permutation of ``count`` images cut into full batches, a new permutation when it runs out."""

    def __init__(self, count: int, batch_size: int, generator: torch.Generator) -> None:
        if count < batch_size:
            raise ValueError(
                f"{count} reference images make no full batch of {batch_size} (the official "
                "loader drops the last partial batch)"
            )
        self.count, self.batch_size, self.generator = count, batch_size, generator
        self._batches: list[Tensor] = []

    def next(self) -> Tensor:
        """The next batch of ``batch_size`` indices."""
        if not self._batches:
            order = torch.randperm(self.count, generator=self.generator)
            full = self.count // self.batch_size * self.batch_size
            self._batches = list(order[:full].split(self.batch_size))
        return self._batches.pop(0)


@dataclass
class TranslationBatch:
    """One batch of source images translated ``num_outs`` times."""

    source_index: Tensor  # [N] positions in the source domain's images
    outputs: Tensor  # [num_outs, N, C, H, W] raw generator outputs
    reference_index: Tensor | None  # [num_outs, N] positions in the references (reference mode)


@torch.no_grad()
def translation_batches(
    generator: Generator,
    mapping_network: MappingNetwork,
    style_encoder: StyleEncoder,
    sources: Tensor,
    target: int,
    mode: str,
    rng: torch.Generator,
    references: Tensor | None = None,
    stream: ReferenceStream | None = None,
    num_outs: int = NUM_OUTS,
    batch_size: int = BATCH_SIZE,
) -> Iterator[TranslationBatch]:
    """Translate every image of ``sources`` (NCHW, [-1, 1]) to domain ``target``, batch by
    batch in a random order (eval.py:48-86). Reference mode needs ``references`` (the target
    domain's images) and the target's ``stream``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "reference" and (references is None or stream is None):
        raise ValueError("reference-guided translation needs the references and their stream")
    device = next(generator.parameters()).device
    latent_dim = mapping_network.config.latent_dim
    order = torch.randperm(len(sources), generator=rng)
    for index in order.split(batch_size):
        count = len(index)
        x_src = sources[index].to(device)
        labels = torch.full((count,), target, dtype=torch.long, device=device)
        outputs, used = [], []
        for _ in range(num_outs):
            if mode == "latent":
                z = torch.randn(count, latent_dim, generator=rng).to(device)
                style = mapping_network(z, labels)
            else:
                assert references is not None and stream is not None
                refs = stream.next()[:count]
                used.append(refs)
                style = style_encoder(references[refs].to(device), labels)
            outputs.append(generator(x_src, style))
        yield TranslationBatch(
            index, torch.stack(outputs), torch.stack(used) if mode == "reference" else None
        )


def pairwise_mean_distance(outputs: Tensor, distance: Distance) -> Tensor:
    """[N]: for each source image, the mean of ``distance`` over all unordered pairs of its
    outputs (``outputs`` [num_outs, N, C, H, W]; ``distance(a, b)`` gives one value per image
    pair, e.g. ``functools.partial(mixgan.metrics.lpips_distance.lpips_pairs, module)``)."""
    num_outs = len(outputs)
    if num_outs < 2:
        raise ValueError("pairwise distances need at least two outputs per source")
    values = [
        distance(outputs[i], outputs[j]).reshape(-1).float().cpu()
        for i in range(num_outs - 1)
        for j in range(i + 1, num_outs)
    ]
    return torch.stack(values).mean(0)


def batch_mean(per_source: Tensor, batch_sizes: list[int]) -> float:
    """The official task value: mean over batches of each batch's mean (eval.py:95-99)."""
    if sum(batch_sizes) != len(per_source):
        raise ValueError("batch sizes do not add up to the number of sources")
    return float(torch.stack([part.mean() for part in per_source.split(batch_sizes)]).mean())


@dataclass
class TaskResult:
    """One source -> target task: its generated images and diversity."""

    task: str  # "<source>2<target>", as eval.py:55
    source: int
    target: int
    images: Tensor  # [S * num_outs, C, H, W] uint8 (quantize), source-major as the PNG names
    source_index: Tensor  # [S] positions in the source domain, in the order translated
    reference_index: Tensor | None  # [S, num_outs] positions in the target's references
    batch_sizes: list[int]
    lpips_per_source: Tensor | None  # [S] mean pairwise distance of each source's outputs
    lpips: float | None  # the official task value (batch_mean)


def evaluate_translations(
    nets_ema: StarGANv2Nets,
    domains: Mapping[str, Tensor],
    mode: str,
    seed: int,
    distance: Distance | None = None,
    num_outs: int = NUM_OUTS,
    batch_size: int = BATCH_SIZE,
) -> Iterator[TaskResult]:
    """Run the protocol over every (source, target) pair of ``domains`` (name -> NCHW
    validation images in [-1, 1]; labels are positions in sorted name order), yielding one
    :class:`TaskResult` per task in the official order, from the EMA networks (as the
    official ``evaluate``); ``distance`` (LPIPS) is optional."""
    generator, mapping, encoder = (
        nets_ema.generator, nets_ema.mapping_network, nets_ema.style_encoder
    )  # fmt: skip
    names = sorted(domains)
    rng = torch.Generator().manual_seed(seed)
    for target, target_name in enumerate(names):
        references = domains[target_name] if mode == "reference" else None
        stream = (
            ReferenceStream(len(references), batch_size, rng) if references is not None else None
        )
        for source, source_name in enumerate(names):
            if source == target:
                continue
            batches = translation_batches(
                generator, mapping, encoder, domains[source_name], target, mode, rng,
                references, stream, num_outs, batch_size,
            )  # fmt: skip
            images, index, refs, sizes, lpips = [], [], [], [], []
            for batch in batches:
                count = len(batch.source_index)
                sizes.append(count)
                index.append(batch.source_index)
                images.append(quantize(batch.outputs.transpose(0, 1).flatten(0, 1)))
                if batch.reference_index is not None:
                    refs.append(batch.reference_index.T)
                if distance is not None:
                    lpips.append(pairwise_mean_distance(batch.outputs, distance))
            per_source = torch.cat(lpips) if lpips else None
            yield TaskResult(
                task=f"{source_name}2{target_name}",
                source=source,
                target=target,
                images=torch.cat(images),
                source_index=torch.cat(index),
                reference_index=torch.cat(refs) if refs else None,
                batch_sizes=sizes,
                lpips_per_source=per_source,
                lpips=batch_mean(per_source, sizes) if per_source is not None else None,
            )


def lpips_summary(results: list[TaskResult], mode: str) -> dict[str, float]:
    """The official LPIPS record (eval.py:98-112): ``LPIPS_<mode>/<task>`` per task and
    ``LPIPS_<mode>/mean``, the plain mean over the tasks."""
    values = {f"LPIPS_{mode}/{r.task}": r.lpips for r in results if r.lpips is not None}
    if len(values) != len(results):
        raise ValueError("every task needs its LPIPS (evaluate with a distance)")
    values[f"LPIPS_{mode}/mean"] = sum(values.values()) / len(values)
    return values
