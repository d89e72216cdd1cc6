"""Score-based pieces of ScoreMix: noise schedule, denoising score matching, the augmentation.

Pixels are in [0, 1] throughout, as in the paper (Section 3.3) and NCSN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixgan.nets.ncsn import ScoreNet

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def max_pairwise_distance(images: Tensor, chunk: int = 256) -> float:
    """Largest Euclidean distance between any two images (σ_1 of the paper).

    ``images`` is ``[N, ...]``, floats in [0, 1] or uint8 (divided by 255). Distances are
    computed in float64 block by block through ``|a|² + |b|² - 2 a·b``, so memory stays at two
    blocks of ``chunk`` images; the winning pair's distance is then recomputed directly.
    """
    if len(images) < 2:
        raise ValueError("need at least two images")
    flat = images.reshape(len(images), -1)
    scale = 1 / 255 if images.dtype == torch.uint8 else 1.0
    starts = range(0, len(flat), chunk)

    def block(start: int) -> Tensor:
        return flat[start : start + chunk].to(torch.float64) * scale

    best, best_pair = -1.0, (0, 1)
    for position, i in enumerate(starts):
        a = block(i)
        a2 = a.square().sum(dim=1)
        for j in starts[position:]:
            b = a if j == i else block(j)
            b2 = a2 if j == i else b.square().sum(dim=1)
            squared = a2[:, None] + b2[None, :] - 2 * a @ b.T
            value, index = squared.flatten().max(dim=0)
            if value.item() > best:
                row, col = divmod(index.item(), squared.shape[1])
                best, best_pair = value.item(), (i + row, j + col)
    first, second = (flat[k].to(torch.float64) * scale for k in best_pair)
    return float((first - second).norm())


def geometric_sigmas(
    sigma_max: float, sigma_min: float = 0.01, gamma: float = 0.99, count: int | None = None
) -> Tensor:
    """Noise levels σ_1 = ``sigma_max`` > ... > σ_N = ``sigma_min`` in a geometric sequence.

    The paper fixes σ_1, σ_N and the ratio γ, which agree only up to rounding. Here the count
    is ``N = 1 + round(log(σ_min / σ_max) / log γ)`` (at least 2), or ``count`` when given (as
    NCSNv2's ``num_classes`` and score-SDE's ``num_scales``), and the ratio is then re-fitted
    to ``r = (σ_min / σ_max)^(1 / (N - 1))``, so the first and last levels are exactly σ_max
    and σ_min: the log-spaced grid NCSNv2's ``get_sigmas`` builds. Returns a float32 tensor of
    length N, largest first.
    """
    if not 0 < sigma_min < sigma_max:
        raise ValueError("need 0 < sigma_min < sigma_max")
    if not 0 < gamma < 1:
        raise ValueError("gamma must be in (0, 1)")
    if count is not None and count < 2:
        raise ValueError("need at least two noise levels")
    if count is None:
        count = max(2, 1 + round(math.log(sigma_min / sigma_max) / math.log(gamma)))
    logs = torch.linspace(math.log(sigma_max), math.log(sigma_min), count, dtype=torch.float64)
    return logs.exp().to(torch.float32)


def technique4_step_size(sigmas: Tensor, steps_each: int) -> float:
    """NCSNv2's Technique 4 (Song & Ermon 2020, §3.3, Eq. 4): the Langevin step ε for which
    annealed Langevin with ``steps_each`` steps per level keeps the sample's variance matched
    to each level, i.e. ε making

        (1 - ε/σ_L²)^(2T) (γ² - 2ε/(σ_L² - σ_L²(1 - ε/σ_L²)²)) + 2ε/(σ_L² - σ_L²(1 - ε/σ_L²)²)

    closest to 1, with γ = σ_{i-1}/σ_i the grid's ratio and σ_L its smallest level. Searched
    over log ε in (1e-12 σ_L², σ_L²). For NCSNv2's FFHQ grid (348 to 0.01 in 2,311 levels)
    and T = 3 this gives 8.9e-7, the 9e-7 of its official ``ffhq.yml``.
    """
    from scipy.optimize import minimize_scalar

    ratio = float(sigmas[0] / sigmas[1])
    floor = float(sigmas[-1]) ** 2

    def mismatch(log_eps: float) -> float:
        eps = math.exp(log_eps)
        keep = 1 - eps / floor
        injected = 2 * eps / (floor - floor * keep**2)
        return abs(keep ** (2 * steps_each) * (ratio**2 - injected) + injected - 1)

    bounds = (math.log(floor) - 12 * math.log(10), math.log(floor) - 1e-9)
    found = minimize_scalar(mismatch, bounds=bounds, method="bounded", options={"xatol": 1e-6})
    return math.exp(found.x)


def dsm_loss(
    score_net: ScoreFn,
    x: Tensor,
    sigmas: Tensor,
    generator: torch.Generator | None = None,
    first_level: int = 0,
) -> Tensor:
    """Multi-scale denoising score matching loss (Eq. 10), averaged over the batch.

    For each example one level index ``i ~ U{first_level..N-1}`` is drawn (``first_level`` 0:
    every level, NCSN), then ``z ~ N(0, I)`` (in that order, from ``generator`` or the global
    RNG on ``x``'s device), ``x̃ = x + σ_i z`` and the example's loss is
    ``σ_i² ||S(x̃, i) + (x̃ - x) / σ_i²||²`` (summed over pixels). The batch mean is an
    unbiased estimate of ``(1/N) Σ_i σ_i² E||S(x̃, σ_i) + (x̃ - x)/σ_i²||²``, Eq. 10 divided
    by N. Unlike NCSN's code there is no extra factor 1/2.
    """
    device = generator.device if generator is not None else x.device
    sigmas = sigmas.to(x.device)
    if not 0 <= first_level < len(sigmas):
        raise ValueError(f"first_level {first_level} is not one of the {len(sigmas)} levels")
    count = len(sigmas) - first_level
    labels = first_level + torch.randint(count, (len(x),), generator=generator, device=device)
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    labels, noise = labels.to(x.device), noise.to(x.device)
    used = sigmas[labels].view(-1, *[1] * (x.ndim - 1))
    perturbed = x + used * noise
    scores = score_net(perturbed, labels)
    residual = scores + (perturbed - x) / used.square()
    per_example = used.flatten().square() * residual.square().flatten(1).sum(dim=1)
    return per_example.mean()


def sample_lambdas(n: int, alpha: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """``n`` mixing weights λ ~ Beta(α, α) as a float64 CPU tensor, reproducible per generator.

    torch.distributions cannot take a generator, so one 63-bit seed is drawn from ``generator``
    (or the global torch RNG) and NumPy's ``Generator.beta`` (seeded with it) draws the weights;
    the torch generator advances, so consecutive calls give fresh weights. float64 because
    Beta(0.2, 0.2) puts about 2 % of its mass within float32 rounding of 1.
    """
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    seed = torch.randint(2**63 - 1, (1,), generator=generator).item()
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.from_numpy(draws)


DENOISE_MODES = ("none", "tweedie", "sdedit")
NoiseFn = Callable[[torch.Size], Tensor]


def scoremix(
    x1: Tensor,
    x2: Tensor,
    score_net: ScoreNet,
    lam: Tensor,
    steps: int = 100,
    lr: float = 0.005,
    final_denoise: dict[str, Any] | None = None,
    noise: NoiseFn | None = None,
    return_losses: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """ScoreMix (Algorithm 1, Eq. 4): move the mixup ``x' = λ x1 + (1-λ) x2`` onto the data.

    ``lam`` has one weight per example. From ``x'``, ``steps`` Adam steps (learning rate ``lr``
    decayed linearly: step k uses ``lr (1 - k/steps)``) minimise ``Σ_n ||S(x_n, σ_N)||²`` over
    the images only, σ_N being the smallest level; the sum over the batch keeps examples
    independent. The score network's parameters and their gradients are left untouched.

    Then the final denoising (the paper: it "approximates the denoising process at t0 = 0.25"),
    ``final_denoise = {"mode": ..., "t0": ..., "steps": ...}``:

    * ``sdedit`` (default): SDEdit on the VE SDE of the network's levels (:func:`sdedit`):
      perturb to σ(t0) = σ_N (σ_1/σ_N)^t0, reverse-diffuse back, end with the noise-free mean;
    * ``tweedie``: one step ``x + σ_N² S(x, σ_N)`` (NCSN's final denoise; moves pixels little);
    * ``none``: the Adam result as it is.

    ``noise`` draws SDEdit's Gaussian noise (``noise(shape)``; default: the global RNG on the
    network's device; :func:`per_example_noise` makes every example's noise its own seed's).
    The result is clamped to [0, 1]. Returns the images, with ``return_losses`` also the
    objective before each Adam step.
    """
    denoise = {**DEFAULT_DENOISE, **(final_denoise or {})}
    weight = lam.to(x1.device, x1.dtype).view(-1, *[1] * (x1.ndim - 1))
    x, losses = minimise_score_norm(weight * x1 + (1 - weight) * x2, score_net, steps, lr)
    if denoise["mode"] == "tweedie":
        x = tweedie_denoise(x, score_net)
    elif denoise["mode"] == "sdedit":
        x = sdedit(x, score_net, denoise["t0"], denoise["steps"], noise)
    elif denoise["mode"] != "none":
        raise ValueError(f"final_denoise mode must be one of {DENOISE_MODES}")
    x = x.clamp(0, 1)
    return (x, losses.cpu()) if return_losses else x


DEFAULT_DENOISE: dict[str, Any] = {"mode": "sdedit", "t0": 0.25, "steps": None}


def minimise_score_norm(
    x: Tensor, score_net: ScoreNet, steps: int, lr: float, start_t: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Algorithm 1's loop: Adam on the images, linearly decayed ``lr``, objective
    ``Σ ||S(x, σ_N)||²``. Returns the images and the objective before each step.

    ``start_t > 0`` (not the paper's: a measurement, benchmarks/README.md) anneals the level of
    the objective from σ(start_t) down to σ_N, evenly in level index (geometrically in σ)."""
    last = len(score_net.sigmas) - 1
    first = level_at(start_t, last + 1)
    schedule_levels = [round(first + (last - first) * k / max(steps - 1, 1)) for k in range(steps)]
    x = x.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 - k / max(steps, 1))
    losses = torch.zeros(steps, device=x.device)  # on x's device: no host sync per step
    with torch.enable_grad():
        for k in range(steps):
            levels = torch.full((len(x),), schedule_levels[k], dtype=torch.long, device=x.device)
            loss = score_net(x, levels).square().sum()
            x.grad = torch.autograd.grad(loss, [x])[0]
            optimizer.step()
            schedule.step()
            losses[k] = loss.detach()
    return x.detach(), losses


@torch.no_grad()
def tweedie_denoise(x: Tensor, score_net: ScoreNet, level: int = -1) -> Tensor:
    """Tweedie's estimate of the clean image at one level: ``x + σ² S(x, σ)``."""
    index = level % len(score_net.sigmas)
    levels = torch.full((len(x),), index, dtype=torch.long, device=x.device)
    return x + score_net.sigmas[index] ** 2 * score_net(x, levels)


def level_at(t: float, num_levels: int) -> int:
    """Index of the level nearest σ(t) = σ_N (σ_1/σ_N)^t on the geometric grid (0 = σ_1)."""
    if not 0 <= t <= 1:
        raise ValueError(f"t must be in [0, 1], got {t}")
    return round((1 - t) * (num_levels - 1))


@torch.no_grad()
def sdedit(
    x: Tensor,
    score_net: ScoreNet,
    t0: float = 0.25,
    steps: int | None = None,
    noise: NoiseFn | None = None,
) -> Tensor:
    """SDEdit (Meng et al., 2022) on the VE SDE whose noise levels are the network's.

    ``x`` is perturbed to the level nearest σ(t0) = σ_N (σ_1/σ_N)^t0, then the reverse
    diffusion (:func:`reverse_diffusion`) runs over ``steps`` levels spread evenly in index from
    there to σ_N (``None``: every level), and returns the last noise-free mean. ``t0 = 0``
    leaves only the final Tweedie step at σ_N, with σ_N of noise added first.
    """
    count = len(score_net.sigmas)
    start = level_at(t0, count)
    levels = list(range(start, count))
    if steps is not None:
        if steps < 1:
            raise ValueError("sdedit steps must be at least 1")
        spread = torch.linspace(start, count - 1, min(steps, len(levels)), dtype=torch.float64)
        levels = sorted({round(v) for v in spread.tolist()})
    draw = noise or _global_noise(x.device)
    perturbed = x + score_net.sigmas[start] * draw(x.shape).to(x)
    return reverse_diffusion(score_net, perturbed, levels, draw)


@torch.no_grad()
def reverse_diffusion(
    score_net: ScoreNet,
    x: Tensor,
    levels: list[int],
    noise: NoiseFn,
    snr: float | None = None,
    corrector_steps: int = 0,
) -> Tensor:
    """The reverse-diffusion predictor of the VE SDE over ``levels`` (indices, largest σ first).

    At level i, followed by level j (σ_j = 0 after the last): ``corrector_steps`` Langevin
    corrections with step ``2 (snr |z| / |S|)²`` (batch-mean norms, as score-SDE), then
    ``x ← x + (σ_i² - σ_j²) S(x, σ_i) + sqrt(σ_i² - σ_j²) z``. Returns the last step's mean,
    the noise-free estimate (score-SDE's noise removal).
    """
    sigmas = score_net.sigmas
    following = [*levels[1:], None]
    mean = x
    for index, after in zip(levels, following, strict=True):
        label = torch.full((len(x),), index, dtype=torch.long, device=x.device)
        for _ in range(corrector_steps):
            score = score_net(x, label)
            z = noise(x.shape).to(x)
            ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
            step = 2 * (snr * ratio) ** 2
            x = x + step * score + torch.sqrt(2 * step) * z
        variance = sigmas[index] ** 2 - (0.0 if after is None else sigmas[after] ** 2)
        mean = x + variance * score_net(x, label)
        if after is not None:
            x = mean + torch.sqrt(variance) * noise(x.shape).to(x)
    return mean


def per_example_noise(seeds: Tensor, device: torch.device | str) -> NoiseFn:
    """Noise whose n-th example comes from its own generator seeded with ``seeds[n]``, so an
    image's noise does not depend on the batch it is drawn in."""
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def draw(shape: torch.Size) -> Tensor:
        if shape[0] != len(generators):
            raise ValueError(f"noise for {shape[0]} examples, seeds for {len(generators)}")
        return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generators])

    return draw


def generator_noise(generator: torch.Generator | None, device: torch.device | str) -> NoiseFn:
    """Noise from one generator (drawn on its device), or the global RNG on ``device``."""
    if generator is None:
        return _global_noise(device)
    return lambda shape: torch.randn(shape, generator=generator, device=generator.device)


def _global_noise(device: torch.device | str) -> NoiseFn:
    return lambda shape: torch.randn(shape, device=device)


# -- sampling from the score network itself (the NCSNv2 and SMLD rows of Table 2) ---------------


@torch.no_grad()
def annealed_langevin(
    score_net: ScoreNet,
    count: int,
    steps_each: int = 5,
    step_lr: float = 6.2e-6,
    final_denoise: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Annealed Langevin dynamics (NCSNv2's sampler) from uniform noise; images in [0, 1].

    For each level i (largest first), ``steps_each`` updates
    ``x ← x + a_i S(x, σ_i) + sqrt(2 a_i) z`` with ``a_i = step_lr (σ_i / σ_N)²``; then
    NCSN's final denoise ``x + σ_N² S(x, σ_N)``.
    """
    sigmas, device = score_net.sigmas, score_net.sigmas.device
    shape = (count, score_net.channels, score_net.resolution, score_net.resolution)
    x = torch.rand(shape, generator=generator, device=device)
    for index, sigma in enumerate(sigmas):
        levels = torch.full((count,), index, dtype=torch.long, device=device)
        step = step_lr * (sigma / sigmas[-1]) ** 2
        for _ in range(steps_each):
            noise = torch.randn(shape, generator=generator, device=device)
            x = x + step * score_net(x, levels) + torch.sqrt(2 * step) * noise
    if final_denoise:
        x = x + sigmas[-1] ** 2 * score_net(x, levels)
    return x.clamp(0, 1)


@torch.no_grad()
def predictor_corrector(
    score_net: ScoreNet,
    count: int,
    snr: float = 0.16,
    corrector_steps: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The score-SDE PC sampler of the variance-exploding SDE (SMLD); images in [0, 1].

    Starts from N(0, σ_1² I), then :func:`reverse_diffusion` over every level with
    ``corrector_steps`` Langevin corrections (signal-to-noise ratio ``snr``) before each
    predictor step; the last predictor mean is returned (noise removal, as score-SDE does).
    """
    sigmas, device = score_net.sigmas, score_net.sigmas.device
    shape = (count, score_net.channels, score_net.resolution, score_net.resolution)
    x = torch.randn(shape, generator=generator, device=device) * sigmas[0]
    noise = generator_noise(generator, device)
    levels = list(range(len(sigmas)))
    mean = reverse_diffusion(score_net, x, levels, noise, snr, corrector_steps)
    return mean.clamp(0, 1)
