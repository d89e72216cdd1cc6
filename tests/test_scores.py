"""Score network, noise schedule, DSM loss, ScoreMix and the score-net training loop."""

from __future__ import annotations

import csv
import math

import pytest
import scipy.stats
import torch
from torch import Tensor, nn

from mixgan.augment.scoremix import ScoreMixer
from mixgan.nets.ncsn import SameMaxPool2d, ScoreNet, stage_layout
from mixgan.nets.stylegan2 import count_parameters
from mixgan.scores import (
    dsm_loss,
    generator_noise,
    geometric_sigmas,
    level_at,
    max_pairwise_distance,
    minimise_score_norm,
    sample_lambdas,
    scoremix,
    sdedit,
    technique4_step_size,
)
from mixgan.train.checkpoint import load_latest_checkpoint
from mixgan.train.scorenet import load_score_net, train_score_net

from .conftest import MixtureScore

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_images(count: int, resolution: int, seed: int) -> Tensor:
    """uint8 images made by upsampling 4×4 random colour fields."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 4, 4, generator=generator)
    up = nn.functional.interpolate(low, size=resolution, mode="bilinear", align_corners=False)
    return (up * 255).round().to(torch.uint8)


class LinearScore(nn.Module):
    """A fixed 'score network': ``a x + b·level``."""

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return 0.7 * x - 0.3 + 0.25 * level.view(-1, 1, 1, 1).float()


def test_dsm_loss_equals_hand_computation():
    sigmas = torch.tensor([2.0, 0.5, 0.1])
    x = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    loss = dsm_loss(LinearScore(), x, sigmas, torch.Generator().manual_seed(7))

    generator = torch.Generator().manual_seed(7)  # the same draws: levels, then noise
    levels = torch.randint(3, (6,), generator=generator)
    noise = torch.randn(x.shape, generator=generator)
    terms = []
    for n in range(6):
        sigma = sigmas[levels[n]].item()
        perturbed = x[n] + sigma * noise[n]
        score = 0.7 * perturbed - 0.3 + 0.25 * levels[n].item()
        terms.append(sigma**2 * ((score + (perturbed - x[n]) / sigma**2) ** 2).sum())
    assert loss.ndim == 0
    torch.testing.assert_close(loss, torch.stack(terms).mean(), rtol=1e-6, atol=0)


def test_dsm_loss_is_zero_for_the_ideal_denoiser():
    x0 = torch.rand(1, 3, 4, 4)
    sigmas = geometric_sigmas(3.0, 0.01, 0.8)

    def ideal(perturbed: Tensor, level: Tensor) -> Tensor:
        # the exact score of N(x0, σ²): what S must output when x0 is the only training point
        return -(perturbed - x0) / sigmas[level].view(-1, 1, 1, 1).square()

    loss = dsm_loss(ideal, x0.expand(16, -1, -1, -1), sigmas, torch.Generator().manual_seed(0))
    assert loss.item() == 0.0


@pytest.mark.parametrize(("count", "chunk"), [(2, 256), (2, 1), (7, 3), (33, 5), (40, 40)])
def test_max_pairwise_distance_matches_brute_force(count, chunk):
    images = torch.rand(count, 3, 6, 6, generator=torch.Generator().manual_seed(count))
    expected = torch.cdist(images.flatten(1).double(), images.flatten(1).double()).max().item()
    assert max_pairwise_distance(images, chunk=chunk) == pytest.approx(expected, rel=1e-12)

    as_bytes = (images * 255).round().to(torch.uint8)
    flat = as_bytes.flatten(1).double() / 255
    expected = torch.cdist(flat, flat).max().item()
    assert max_pairwise_distance(as_bytes, chunk=chunk) == pytest.approx(expected, rel=1e-12)


def test_geometric_sigmas():
    sigmas = geometric_sigmas(50.0)
    assert len(sigmas) == 1 + round(math.log(0.01 / 50) / math.log(0.99)) == 848
    assert sigmas[0].item() == pytest.approx(50.0, rel=1e-6)
    assert sigmas[-1].item() == pytest.approx(0.01, rel=1e-6)
    ratios = (sigmas[1:].double() / sigmas[:-1].double()).numpy()
    assert ratios.max() - ratios.min() < 1e-6
    assert ratios.mean() == pytest.approx(0.99, abs=1e-5)
    assert len(geometric_sigmas(1.0, 0.01, 0.5)) == 1 + round(math.log(0.01) / math.log(0.5))
    with pytest.raises(ValueError):
        geometric_sigmas(0.01, 0.01)


def test_lambda_statistics_and_reproducibility():
    alpha = 0.2
    lambdas = sample_lambdas(20_000, alpha, torch.Generator().manual_seed(0))
    assert lambdas.shape == (20_000,) and lambdas.dtype == torch.float64
    assert lambdas.min() >= 0 and lambdas.max() <= 1
    assert lambdas.mean().item() == pytest.approx(0.5, abs=0.015)
    variance = alpha**2 / ((2 * alpha) ** 2 * (2 * alpha + 1))  # = 1 / (4 · 1.4)
    assert lambdas.var().item() == pytest.approx(variance, abs=0.006)
    assert scipy.stats.kstest(lambdas.numpy(), scipy.stats.beta(alpha, alpha).cdf).pvalue > 0.01

    generator = torch.Generator().manual_seed(5)
    first, second = sample_lambdas(8, generator=generator), sample_lambdas(8, generator=generator)
    again = torch.Generator().manual_seed(5)
    assert torch.equal(first, sample_lambdas(8, generator=again))
    assert torch.equal(second, sample_lambdas(8, generator=again))
    assert not torch.equal(first, second)


@pytest.mark.parametrize("norm", ["cond_instance_plus", "instance_plus"])
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_score_net_shapes_and_input_gradient(resolution, norm):
    torch.manual_seed(0)
    sigmas = geometric_sigmas(5.0, 0.01, 0.5)
    net = ScoreNet(sigmas, resolution, channels=3, ngf=4, norm=norm)
    x = torch.rand(2, 3, resolution, resolution, requires_grad=True)
    level = torch.tensor([0, len(sigmas) - 1])
    out = net(x, level)
    assert out.shape == x.shape and torch.isfinite(out).all()
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0

    with torch.no_grad():
        top, bottom = net(x[:1], level[:1]), net(x[:1], level[1:])
    if norm == "instance_plus":  # unconditional body, output divided by σ
        torch.testing.assert_close(top * sigmas[0], bottom * sigmas[-1])
    else:
        assert not torch.allclose(top * sigmas[0], bottom * sigmas[-1])


@pytest.mark.parametrize("size", [3, 5])
def test_same_max_pool_equals_the_2d_pooling_with_and_without_autograd(size):
    x = torch.randn(3, 4, 9, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    reference = nn.MaxPool2d(size, 1, size // 2)
    fast = SameMaxPool2d(size)
    expected = reference(x)
    weights = torch.rand(expected.shape, generator=torch.Generator().manual_seed(1))
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)
    got = fast(x)  # autograd: the two 1-D poolings
    (grad_got,) = torch.autograd.grad((got * weights).sum(), x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the gradient reaches the same inputs; sums of several outputs' gradients may round apart
    assert torch.equal(grad_got != 0, grad_expected != 0)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-6, atol=0)
    with torch.no_grad():  # the shifted maxima
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="odd"):
        SameMaxPool2d(4)


def test_score_net_depth_follows_the_resolution_unless_configured(tmp_path):
    sigmas = geometric_sigmas(5.0, 0.01, 0.5)
    assert [pooled for _, pooled, _ in stage_layout(32)].count(True) == 1
    assert [pooled for _, pooled, _ in stage_layout(64)].count(True) == 2
    assert [pooled for _, pooled, _ in stage_layout(256)].count(True) == 3
    deeper = ScoreNet(sigmas, 32, channels=3, ngf=4, pooled_stages=3)
    assert deeper.pooled_stages == 3
    assert count_parameters(deeper) > count_parameters(ScoreNet(sigmas, 32, channels=3, ngf=4))
    x = torch.rand(2, 3, 32, 32)
    assert deeper(x, torch.tensor([0, 1])).shape == x.shape
    with pytest.raises(ValueError, match="divisible"):
        ScoreNet(sigmas, 24, channels=3, ngf=4, pooled_stages=4)

    images = smooth_images(8, 16, seed=2)
    settings = {
        "ngf": 4,
        "pooled_stages": 2,
        "gamma": 0.5,
        "batch": 4,
        "iterations": 2,
        "checkpoint_every": 1,
    }
    train_score_net(images, {**settings, "device": "cpu", "log_every": 1}, tmp_path)
    assert load_score_net(tmp_path / "scorenet.pt").pooled_stages == 2
    with pytest.raises(ValueError, match="pooled_stages"):
        train_score_net(images, {**settings, "pooled_stages": 1, "iterations": 3}, tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny score net trained on 64 smooth 8×8 images (about 15 s)."""
    images = smooth_images(64, 8, seed=0)
    out_dir = tmp_path_factory.mktemp("scorenet")
    settings = {
        "ngf": 8,
        "gamma": 0.7,
        "batch": 16,
        "iterations": 200,
        "ema": 0.99,
        "log_every": 50,
        "checkpoint_every": 100,
        "device": "cpu",
    }
    summary = train_score_net(images, settings, out_dir)
    return images, out_dir, summary


def test_training_writes_curve_and_model(trained):
    images, out_dir, summary = trained
    assert summary["sigma_max"] == pytest.approx(max_pairwise_distance(images), rel=1e-6)
    assert summary["num_levels"] == len(geometric_sigmas(summary["sigma_max"], 0.01, 0.7))
    with open(out_dir / "curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [50, 100, 150, 200]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[-1]["loss_ema"]) < float(rows[0]["loss_ema"])
    net = load_score_net(out_dir / "scorenet.pt")
    assert net.resolution == 8 and net.ngf == 8 and len(net.sigmas) == summary["num_levels"]


def test_scoremix_decreases_the_score_norm(trained):
    images, out_dir, _ = trained
    net = load_score_net(out_dir / "scorenet.pt").requires_grad_(True)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    x = images.float() / 255
    lam = sample_lambdas(8, generator=torch.Generator().manual_seed(0))

    def noise():
        return generator_noise(torch.Generator().manual_seed(3), "cpu")

    out, losses = scoremix(x[:8], x[8:16], net, lam, noise=noise(), return_losses=True)
    assert out.shape == (8, 3, 8, 8) and out.min() >= 0 and out.max() <= 1
    assert losses.shape == (100,)
    assert losses[-1] < 0.5 * losses[0]
    assert (losses[1:] <= losses[:-1]).float().mean() >= 0.9
    for name, p in net.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None

    assert torch.equal(out, scoremix(x[:8], x[8:16], net, lam, noise=noise()))  # seeded
    mixed = scoremix(x[:8], x[8:16], net, lam, steps=0, final_denoise={"mode": "none"})
    weight = lam.float().view(-1, 1, 1, 1)
    torch.testing.assert_close(mixed, weight * x[:8] + (1 - weight) * x[8:16])


def test_resumed_training_reproduces_uninterrupted_run(tmp_path):
    images = smooth_images(10, 8, seed=1)
    settings = {
        "ngf": 4,
        "gamma": 0.5,
        "batch": 4,
        "iterations": 6,
        "checkpoint_every": 3,
        "log_every": 3,
        "seed": 3,
        "flip": True,
        "device": "cpu",
    }
    train_score_net(images, settings, tmp_path / "whole")
    train_score_net(images, {**settings, "iterations": 3}, tmp_path / "split")
    train_score_net(images, settings, tmp_path / "split")

    for name in ("whole", "split"):
        assert load_latest_checkpoint(tmp_path / name / "checkpoints")[0] == 6
    whole_state = load_latest_checkpoint(tmp_path / "whole" / "checkpoints")[1]
    split_state = load_latest_checkpoint(tmp_path / "split" / "checkpoints")[1]
    whole = torch.load(tmp_path / "whole" / "scorenet.pt", weights_only=False)["state_dict"]
    split = torch.load(tmp_path / "split" / "scorenet.pt", weights_only=False)["state_dict"]
    for first, second in ((whole, split), (whole_state["model"], split_state["model"])):
        assert first.keys() == second.keys()
        for key, value in first.items():
            assert torch.equal(value, second[key]), key
    curve = read_curve(tmp_path / "whole" / "curve.csv")
    assert [row["step"] for row in curve] == ["3", "6"]
    assert read_curve(tmp_path / "split" / "curve.csv") == curve
    with pytest.raises(ValueError, match="gamma"):
        train_score_net(images, {**settings, "gamma": 0.6}, tmp_path / "split")


def read_curve(path) -> list[dict[str, str]]:
    """curve.csv rows without the timing column."""
    with open(path) as handle:
        return [
            {k: v for k, v in row.items() if k != "sec_per_iter"} for row in csv.DictReader(handle)
        ]


def test_conditional_norm_reads_the_level_of_each_example():
    """Changing one level's embedding changes the output at that level only: a norm that
    ignored the level (or read another) would fail one of the two checks."""
    torch.manual_seed(0)
    sigmas = geometric_sigmas(5.0, 0.01, 0.5)
    last = len(sigmas) - 1
    net = ScoreNet(sigmas, 16, channels=3, ngf=4, norm="cond_instance_plus").eval()
    norms = [m for m in net.modules() if getattr(m, "embed", None) is not None]
    assert norms
    with torch.no_grad():
        for norm in norms:  # every level now carries level 0's parameters
            norm.embed.weight.copy_(norm.embed.weight[:1].expand_as(norm.embed.weight))
    x = torch.rand(2, 3, 16, 16)
    levels = torch.tensor([0, last])
    with torch.no_grad():
        same = net(x, levels)
        for norm in norms:
            channels = norm.embed.weight.shape[1] // 3
            norm.embed.weight[last, 2 * channels :] += 0.5  # the last level's bias only
        changed = net(x, levels)
    torch.testing.assert_close(changed[0], same[0], rtol=0, atol=0)
    assert (changed[1] - same[1]).abs().max() > 1e-3


class RootScore(nn.Module):
    """S(x) = sqrt(x + 1): ||S||² = Σ (x + 1) has gradient 1 for every pixel, so each Adam step
    moves every pixel by exactly its learning rate (up to Adam's eps)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("sigmas", torch.tensor([1.0, 0.01]))

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return (x + 1).sqrt()


def test_scoremix_steps_decay_the_learning_rate_linearly():
    x = torch.full((2, 3, 4, 4), 0.5)
    lam = torch.tensor([0.5, 0.5], dtype=torch.float64)
    steps, lr = 10, 0.005
    _, losses = scoremix(x, x, RootScore(), lam, steps, lr, {"mode": "none"}, return_losses=True)
    moved = (losses[:-1] - losses[1:]) / x.numel()  # each pixel's move in steps 0 .. steps-2
    expected = torch.tensor([lr * (1 - k / steps) for k in range(steps - 1)])
    torch.testing.assert_close(moved, expected, rtol=1e-3, atol=0)  # float32 sums of 96 pixels


class LevelRecorder(RootScore):
    """RootScore on a 11-level grid that records the level of each call."""

    def __init__(self):
        super().__init__()
        self.sigmas = geometric_sigmas(10.0, 0.01, 0.5)
        self.calls: list[list[int]] = []

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        self.calls.append(level.tolist())
        return super().forward(x, level)


def test_the_objective_is_at_sigma_n_unless_annealed_from_a_higher_level():
    x = torch.full((2, 3, 4, 4), 0.5)
    plain = LevelRecorder()
    minimise_score_norm(x, plain, 5, 0.005)
    last = len(plain.sigmas) - 1
    assert plain.calls == [[last, last]] * 5  # Algorithm 1: every step at sigma_N
    annealed = LevelRecorder()
    minimise_score_norm(x, annealed, 5, 0.005, start_t=0.5)
    first = level_at(0.5, last + 1)
    assert [call[0] for call in annealed.calls] == [
        round(first + (last - first) * k / 4) for k in range(5)
    ]
    assert annealed.calls[0] == [first, first] and annealed.calls[-1] == [last, last]


def test_sdedit_with_the_exact_score_returns_a_perturbed_point_to_its_component():
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2, 3, 4, 4, generator=generator)
    distance = (points[0] - points[1]).norm().item()
    score = MixtureScore(points, geometric_sigmas(distance, 0.01, 0.9))
    noise = generator_noise(torch.Generator().manual_seed(1), "cpu")
    # x* = a mixture nearer a (0.4 of the way to b) plus the kind of high-frequency texture
    # Adam's per-pixel steps leave (±0.05 per pixel)
    texture = 0.05 * torch.sign(torch.randn(64, 3, 4, 4, generator=generator))
    start = 0.6 * points[0] + 0.4 * points[1] + texture
    out = sdedit(start, score, t0=0.25, noise=noise)
    assert (out - points[0]).flatten(1).norm(dim=1).max() < 1e-4  # all back on a's component
    # from t0 = 1 (noise at sigma_1, the whole distance a-b) some land on b: t0 sets the level
    far = sdedit(start, score, t0=1.0, noise=noise)
    to_b = (far - points[1]).flatten(1).norm(dim=1) < 1e-4
    assert 0 < to_b.sum() < len(start)
    with pytest.raises(ValueError, match="t must be in"):
        sdedit(start, score, t0=1.5)


def test_sdedit_levels_run_from_sigma_t0_to_sigma_n():
    sigmas = geometric_sigmas(100.0, 0.01, 0.99)
    count = len(sigmas)
    start = level_at(0.25, count)
    sigma_t0 = 0.01 * (100.0 / 0.01) ** 0.25
    assert sigmas[start].item() == pytest.approx(sigma_t0, rel=0.01)
    calls: list[int] = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("sigmas", sigmas)

        def forward(self, x: Tensor, level: Tensor) -> Tensor:
            calls.append(int(level[0]))
            return torch.zeros_like(x)

    sdedit(torch.zeros(1, 3, 2, 2), Recorder(), t0=0.25)
    assert calls == list(range(start, count))
    calls.clear()
    sdedit(torch.zeros(1, 3, 2, 2), Recorder(), t0=0.25, steps=5)
    assert len(calls) == 5 and calls[0] == start and calls[-1] == count - 1
    assert calls == sorted(calls)


def test_scoremix_images_do_not_depend_on_their_batch(trained):
    """With per-image noise seeds, an image's ScoreMix result is the same alone or in a batch."""
    images, out_dir, _ = trained
    net = load_score_net(out_dir / "scorenet.pt")
    x = images.float() / 255
    lam = sample_lambdas(4, generator=torch.Generator().manual_seed(0))
    seeds = torch.tensor([11, 12, 13, 14])
    mixer = ScoreMixer(net, steps=5, final_denoise={"mode": "sdedit", "t0": 0.25, "steps": 8})
    together = mixer(x[:4], x[4:8], lam, seeds=seeds)
    alone = mixer(x[2:3], x[6:7], lam[2:3], seeds=seeds[2:3])
    torch.testing.assert_close(together[2:3], alone, rtol=0, atol=1e-5)
    other = mixer(x[2:3], x[6:7], lam[2:3], seeds=torch.tensor([99]))
    assert (other - alone).abs().max() > 1e-3  # the seed is what drives the noise


def test_technique4_gives_ncsnv2s_ffhq_step_and_balances_the_variance():
    """NCSNv2's ffhq.yml: 2,311 levels from 348 to 0.01, 3 steps per level, step 9e-7."""
    sigmas = geometric_sigmas(348.0, 0.01, count=2311)
    assert len(sigmas) == 2311 and sigmas[0].item() == pytest.approx(348.0, rel=1e-6)
    step = technique4_step_size(sigmas, steps_each=3)
    assert step == pytest.approx(9e-7, rel=0.02)
    # the criterion itself, evaluated by hand at the result and at twice / half of it
    ratio, floor = float(sigmas[0] / sigmas[1]), 0.01**2

    def criterion(eps: float) -> float:
        keep = 1 - eps / floor
        injected = 2 * eps / (floor - floor * keep**2)
        return keep**6 * (ratio**2 - injected) + injected

    best = abs(criterion(step) - 1)
    assert best < abs(criterion(2 * step) - 1) and best < abs(criterion(step / 2) - 1)
    # more steps per level need a smaller step for the same balance
    assert technique4_step_size(sigmas, steps_each=10) < step
