"""MixDL's Table 2 baselines: the MSGAN, N-Div and DistanceGAN losses on given numbers, and
their parts in the GAN loop (StyleGAN2 and FastGAN)."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from mixgan.train import mode_collapse
from mixgan.train.loop import train_gan
from mixgan.train.mode_collapse import DistancePreservation
from mixgan.train.parts import build_parts

from .conftest import final_generator, same_tensors, train_whole_and_split
from .test_gan_training import LOG, paths, tiny_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def column(values: list[float]) -> torch.Tensor:
    """Scalars as a batch of 1-element vectors, so distances are |a - b|."""
    return torch.tensor(values, dtype=torch.float64)[:, None]


def test_mode_seeking_loss_is_the_inverse_ratio_of_the_mean_gaps():
    z = column([0.0, 0.0, 2.0, 2.0])  # pairs (0, 2) and (0, 2): latent gap 2
    images = torch.zeros(4, 3, 2, 2)
    images[2:] = 0.5  # image gap 0.5
    assert float(mode_collapse.mode_seeking_loss(z, images)) == pytest.approx(1 / (0.25 + 1e-5))


def test_mode_seeking_loss_pushes_a_collapsed_pair_apart():
    torch.manual_seed(0)
    z = torch.randn(8, 4)
    images = (0.01 * torch.randn(8, 3, 4, 4)).requires_grad_(True)
    spread = (images[:4] - images[4:]).abs().mean()
    mode_collapse.mode_seeking_loss(z, images).backward()
    with torch.no_grad():
        stepped = images - 1e-5 * images.grad
    assert (stepped[:4] - stepped[4:]).abs().mean() > spread


def test_normalized_diversity_loss_is_zero_when_images_keep_the_latents_relative_distances():
    torch.manual_seed(0)
    z = torch.randn(6, 8)
    images = (3.0 * z).reshape(6, 2, 2, 2) + 0.5  # distances scaled by 3: same normalised ones
    assert float(mode_collapse.normalized_diversity_loss(z, images, alpha=1.0)) < 1e-6
    assert float(mode_collapse.normalized_diversity_loss(z, images, alpha=0.8)) == 0.0


def test_normalized_diversity_loss_on_given_distances():
    # latents on a line at 0, 1, 3; images at 0, 0, 1: rows of normalised distances
    z, images = column([0.0, 1.0, 3.0]), column([0.0, 0.0, 1.0])
    dz = torch.tensor([[0, 1 / 4, 3 / 4], [1 / 3, 0, 2 / 3], [3 / 5, 2 / 5, 0]])
    dy = torch.tensor([[0, 0, 1], [0, 0, 1], [1 / 2, 1 / 2, 0]])
    expected = float(torch.relu(dz - dy).sum() / 6)
    loss = mode_collapse.normalized_diversity_loss(z, images, alpha=1.0)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_normalized_diversity_loss_can_be_driven_down_by_gradient_descent():
    torch.manual_seed(0)
    z = torch.randn(8, 4)
    images = (0.01 * torch.randn(8, 3, 4, 4)).requires_grad_(True)
    optimiser = torch.optim.Adam([images], lr=0.05)
    first = float(mode_collapse.normalized_diversity_loss(z, images).detach())
    for _ in range(200):
        optimiser.zero_grad()
        loss = mode_collapse.normalized_diversity_loss(z, images)
        loss.backward()
        optimiser.step()
        assert torch.isfinite(images.grad).all()
    assert first > 0 and float(loss) < 0.1 * first


def test_gaussian_distance_statistics_match_sampled_latents():
    torch.manual_seed(0)
    dim = 64
    z1, z2 = torch.randn(2, 20000, dim, dtype=torch.float64)
    gaps = (z1 - z2).abs().mean(1)
    mean, std = mode_collapse.gaussian_distance_statistics(dim)
    assert float(gaps.mean()) == pytest.approx(mean, rel=0.005)
    assert float(gaps.std()) == pytest.approx(std, rel=0.03)


def test_distance_statistics_and_preservation_loss_on_given_numbers():
    # pair distances of 0, 1, 3: 1, 3, 2 -> mean 2, population deviation sqrt(2/3)
    mean, std = mode_collapse.distance_statistics(column([0.0, 1.0, 3.0]))
    assert (mean, std) == pytest.approx((2.0, math.sqrt(2 / 3)))
    z = column([0.0, 1.0, 3.0])
    # latent pairs standardised with (2, 1): -1, 1, 0
    # images at 0, 2, 6 standardised with (4, 2): -1, 1, 0 -> no loss
    loss = mode_collapse.distance_preservation_loss(z, column([0.0, 2.0, 6.0]), (2, 1), (4, 2))
    assert float(loss) == pytest.approx(0.0)
    # images at 0, 1, 3 with (4, 2): -1.5, -0.5, -1 -> |gaps| 0.5, 1.5, 1, mean 1
    loss = mode_collapse.distance_preservation_loss(z, column([0.0, 1.0, 3.0]), (2, 1), (4, 2))
    assert float(loss) == pytest.approx(1.0)


def test_distancegan_part_takes_the_image_statistics_of_the_training_subset():
    [part] = build_parts([{"name": "dg", "kind": "distancegan", "weight": 2.0,
                           "statistics_images": 3}])  # fmt: skip
    assert isinstance(part, DistancePreservation)
    images = torch.zeros(5, 3, 2, 2, dtype=torch.uint8)
    images[1], images[2], images[3:] = 255, 51, 7  # only the first three count: 0, 2, 0.4 + 1
    part.set_training_images(images)
    expected = mode_collapse.distance_statistics(images[:3].float() / 127.5 - 1)
    assert part.image_statistics == pytest.approx(expected)
    z, fake = torch.randn(4, 8), torch.rand(4, 3, 2, 2) * 2 - 1
    unweighted = mode_collapse.distance_preservation_loss(
        z, fake, mode_collapse.gaussian_distance_statistics(8), expected
    )
    assert float(part.g_regularizer(z, fake)) == pytest.approx(2 * float(unweighted))
    assert part.stats() == {"distancegan_loss": pytest.approx(float(unweighted))}


def regularized_spec(minimal_config, kind, weight=1.0):
    config = copy.deepcopy(minimal_config)
    config["parts"]["reg"] = {"kind": kind, "weight": weight}
    config["methods"]["reg"] = ["diffaug", "reg"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "reg"})
    return tiny_spec(config, method="reg", kimg=0.064)


@pytest.mark.parametrize("kind", ["msgan", "ndiv", "distancegan"])
def test_regularized_stylegan2_trains_logs_its_loss_and_resumes_exactly(
    minimal_config, data, tmp_path, kind
):
    spec = regularized_spec(minimal_config, kind)
    whole, resumed = train_whole_and_split(spec, 0.032, lambda run: paths(data, tmp_path / run))
    assert whole["steps"] == resumed["steps"] == 8
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert curve[f"{kind}_loss"].map(math.isfinite).all() and (curve[f"{kind}_loss"] > 0).all()
    split = pd.read_csv(tmp_path / "split" / "curve.csv")
    pd.testing.assert_series_equal(curve[f"{kind}_loss"], split[f"{kind}_loss"])


def test_a_regularizer_of_weight_zero_trains_exactly_like_the_plain_method(
    minimal_config, data, tmp_path
):
    """The regularizer draws no random numbers: at weight 0 the run equals plain DiffAugment,
    and at weight 1 it differs (the term reaches G)."""
    plain = tiny_spec(minimal_config, kimg=0.032)
    train_gan(plain, paths(data, tmp_path / "plain"), LOG)
    for weight, run in ((0.0, "zero"), (1.0, "one")):
        spec = regularized_spec(minimal_config, "msgan", weight)
        spec["backbone"]["train"]["kimg"] = 0.032
        train_gan(spec, paths(data, tmp_path / run), LOG)
    reference = final_generator(tmp_path / "plain")
    assert same_tensors(reference, final_generator(tmp_path / "zero"))
    assert not same_tensors(reference, final_generator(tmp_path / "one"))
