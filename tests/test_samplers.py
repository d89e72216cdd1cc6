"""Score-model samplers (NCSNv2's annealed Langevin, SMLD's VE predictor-corrector) on an
analytic score: data ~ N(m, s² I), so the noisy score is -(x - m) / (s² + σ²)."""

from __future__ import annotations

import torch

from mixgan.scores import annealed_langevin, geometric_sigmas, predictor_corrector

MEAN, STD = 0.5, 0.1


class GaussianScore:
    """Exact score of N(MEAN, STD²) perturbed by each noise level; ScoreNet's interface."""

    channels, resolution = 3, 8

    def __init__(self, sigmas: torch.Tensor):
        self.sigmas = sigmas

    def __call__(self, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        sigma = self.sigmas[levels].view(-1, 1, 1, 1)
        return -(x - MEAN) / (STD**2 + sigma**2)


def moments(images: torch.Tensor) -> tuple[float, float]:
    return float(images.mean()), float(images.std())


def test_annealed_langevin_samples_the_data_distribution():
    net = GaussianScore(geometric_sigmas(3.0, 0.01, 0.9))
    images = annealed_langevin(
        net, 256, steps_each=5, step_lr=2e-5, generator=torch.Generator().manual_seed(0)
    )
    mean, std = moments(images)
    assert images.shape == (256, 3, 8, 8)
    assert abs(mean - MEAN) < 0.01 and abs(std - STD) < 0.01


def test_predictor_corrector_samples_the_data_distribution():
    net = GaussianScore(geometric_sigmas(3.0, 0.01, 0.9))
    images = predictor_corrector(net, 256, snr=0.16, generator=torch.Generator().manual_seed(0))
    mean, std = moments(images)
    assert abs(mean - MEAN) < 0.01 and abs(std - STD) < 0.01


def test_samplers_are_seeded():
    net = GaussianScore(geometric_sigmas(3.0, 0.01, 0.8))
    for sample in (annealed_langevin, predictor_corrector):
        a = sample(net, 4, generator=torch.Generator().manual_seed(1))
        b = sample(net, 4, generator=torch.Generator().manual_seed(1))
        c = sample(net, 4, generator=torch.Generator().manual_seed(2))
        assert torch.equal(a, b) and not torch.equal(a, c)
