"""Mixing functions (mixup, CutMix, AugMix, ScoreMix) share one interface; augmented sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixgan.augment.mixing import cutmix, cutmix_boxes, make_augmix, mixers, mixup
from mixgan.augment.scoremix import ScoreMixer, draw_pairs, make_augmented_set
from mixgan.nets.ncsn import ScoreNet
from mixgan.scores import geometric_sigmas, scoremix

from .conftest import MixtureScore


def images(seed: int, n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_mixup_is_the_convex_combination():
    x1, x2 = images(0), images(1)
    lam = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.1])
    out = mixup(x1, x2, lam)
    expected = lam.view(-1, 1, 1, 1) * x1 + (1 - lam.view(-1, 1, 1, 1)) * x2
    assert torch.allclose(out, expected)
    assert torch.equal(out[4], x1[4]) and torch.equal(out[0], x2[0])


def test_cutmix_pastes_one_box_of_area_one_minus_lambda():
    x1, x2 = torch.zeros(400, 1, 32, 32), torch.ones(400, 1, 32, 32)
    lam = torch.full((400,), 0.75)
    generator = torch.Generator().manual_seed(0)
    out = cutmix(x1, x2, lam, generator)
    top, bottom, left, right = cutmix_boxes(32, 32, lam, torch.Generator().manual_seed(0))
    area = (bottom - top) * (right - left)
    assert torch.equal(out.sum(dim=(1, 2, 3)).long(), area)  # exactly the box comes from x2
    unclipped = (top > 0) & (bottom < 32) & (left > 0) & (right < 32)
    assert unclipped.any() and (area[unclipped] == 16 * 16).all()  # side 32 * sqrt(0.25)
    assert (area <= 16 * 16).all() and (area < 16 * 16).any()  # clipped at the border


def test_augmix_uses_x1_only_and_follows_the_generator_seed():
    x1, x2 = images(0), images(1)
    lam = torch.full((6,), 0.5)
    augmix = make_augmix()
    a = augmix(x1, x2, lam, torch.Generator().manual_seed(3))
    b = augmix(x1, images(2), lam * 0, torch.Generator().manual_seed(3))
    c = augmix(x1, x2, lam, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x1.shape and a.min() >= 0 and a.max() <= 1
    assert (a - x1).abs().mean() > 0.01  # it does change the images


@pytest.fixture(scope="module")
def score_net():
    torch.manual_seed(0)
    return ScoreNet(geometric_sigmas(5.0, 0.01, 0.8), resolution=16, ngf=4).eval()


def test_every_mixer_has_the_same_interface(score_net):
    x1, x2, lam = images(0), images(1), torch.full((6,), 0.3)
    every = {**mixers(), "scoremix": ScoreMixer(score_net, steps=2)}
    for name, mixer in every.items():
        out = mixer(x1, x2, lam, torch.Generator().manual_seed(0))
        assert out.shape == x1.shape and out.dtype == x1.dtype, name
        assert out.min() >= 0 and out.max() <= 1, name


def test_score_mixer_runs_algorithm_1(score_net):
    x1, x2, lam = images(0), images(1), torch.full((6,), 0.3)
    plain = {"mode": "none"}
    expected = scoremix(x1, x2, score_net, lam, steps=3, lr=0.01, final_denoise=plain)
    assert torch.equal(ScoreMixer(score_net, 3, 0.01, plain)(x1, x2, lam), expected)


def test_pairs_are_distinct_uniform_and_prefix_stable():
    pairs = draw_pairs(5, 20_000, torch.Generator().manual_seed(0))
    assert (pairs[:, 0] != pairs[:, 1]).all()
    counts = np.bincount(pairs[:, 0].numpy(), minlength=5)
    assert counts.min() > 0.18 * 20_000 and counts.max() < 0.22 * 20_000
    assert torch.equal(draw_pairs(5, 7, torch.Generator().manual_seed(0)), pairs[:7])
    with pytest.raises(ValueError):
        draw_pairs(1, 3, torch.Generator())


PART = {"mu": 3, "seed": 0, "alpha": 0.2, "steps": 0, "lr": 0.005}
PART["final_denoise"] = {"mode": "none"}


def test_static_mu_writes_exactly_mu_times_n_images_with_their_pairs_and_weights():
    data = (images(0, n=5) * 255).to(torch.uint8)
    out, record = make_augmented_set(data, mixup, PART, batch_size=4)
    assert out.shape == (15, 16, 16, 3) and out.dtype == np.uint8
    assert record["count"] == 15 and len(record["pairs"]) == 15 and len(record["lambdas"]) == 15
    i, j = record["pairs"][7]
    lam = record["lambdas"][7]
    expected = lam * data[i].float() / 255 + (1 - lam) * data[j].float() / 255
    assert (
        np.abs(out[7].astype(float) - (expected * 255).round().permute(1, 2, 0).numpy()).max() <= 1
    )


def test_augmented_sets_are_seeded_and_nested_in_mu():
    data = (images(0, n=5) * 255).to(torch.uint8)
    small, small_record = make_augmented_set(data, mixup, {**PART, "mu": 2})
    large, large_record = make_augmented_set(data, mixup, {**PART, "mu": 6})
    again, _ = make_augmented_set(data, mixup, {**PART, "mu": 2})
    other, _ = make_augmented_set(data, mixup, {**PART, "mu": 2, "seed": 1})
    assert np.array_equal(small, again) and not np.array_equal(small, other)
    assert np.array_equal(large[:10], small)  # the mu = 2 set is a prefix of the mu = 6 set
    assert large_record["pairs"][:10] == small_record["pairs"]
    assert large_record["lambdas"][:10] == small_record["lambdas"]


def test_scoremix_with_the_exact_score_moves_mixtures_onto_the_data():
    data = images(0, n=4, size=8)
    net = MixtureScore(data, geometric_sigmas(5.0, 0.01, 0.9))
    lam = torch.tensor([0.3, 0.6, 0.7, 0.8])
    x1, x2 = data[[0, 1, 2, 3]], data[[1, 2, 3, 0]]

    def nearest(x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x.flatten(1), data.flatten(1)).min(dim=1).values

    before = nearest(mixup(x1, x2, lam))
    after = nearest(ScoreMixer(net)(x1, x2, lam))
    assert (before > 1.0).all()  # mixtures lie off the data
    assert (after < 1e-3).all()  # ScoreMix climbs the density to the nearest training image
