"""MixDL's Table 2 baselines: the MSGAN, N-Div and DistanceGAN losses on given numbers, and
their parts in the GAN loop (StyleGAN2 and FastGAN)."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from mixgan.train import mode_collapse
from mixgan.train.augment_parts import DiffAugment
from mixgan.train.gan import GANTrainer
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


def test_normalized_diversity_gradient_holds_each_rows_normaliser_fixed():
    """The official code divides by (row sum + 1e-12).detach(): on latents at 0, 1, 3 and
    images at 0, 0.5, 2 (alpha 1) the pairs (0, 1), (1, 0), (2, 0) are active, each of
    gradient -(1/6) sign(y_i - y_j) / S_i on y_i, with the image rows' sums S = 2.5, 2, 3.5."""
    z = column([0.0, 1.0, 3.0])
    images = column([0.0, 0.5, 2.0]).requires_grad_(True)
    loss = mode_collapse.normalized_diversity_loss(z, images, alpha=1.0)
    assert float(loss.detach()) == pytest.approx((0.05 + 1 / 12 + (0.6 - 4 / 7)) / 6)
    loss.backward()
    expected = torch.tensor([0.4 + 0.5 + 2 / 7, -(0.4 + 0.5), -2 / 7], dtype=torch.float64) / 6
    torch.testing.assert_close(images.grad.flatten(), expected)


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
    assert first > 0 and float(loss.detach()) < 0.1 * first


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


def test_mode_seeking_loss_of_collapsed_images_is_one_over_eps():
    z = torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0], [0.0, 0.0], [9.0, 9.0]])
    images = torch.ones(5, 3, 2, 2)  # the odd fifth sample is left out of the pairs
    assert float(mode_collapse.mode_seeking_loss(z, images)) == pytest.approx(1e5)
    # pairs (0, 2), (1, 3): latent gap mean(1, 0, 2, 1) = 1; image gap 0.5
    images[2:4] = 0.5
    assert float(mode_collapse.mode_seeking_loss(z, images)) == pytest.approx(1 / (0.5 + 1e-5))


@pytest.mark.parametrize(
    "loss",
    [
        mode_collapse.mode_seeking_loss,
        mode_collapse.normalized_diversity_loss,
        lambda z, y: mode_collapse.distance_preservation_loss(z, y, (0.0, 1.0), (0.0, 1.0)),
    ],
    ids=["msgan", "ndiv", "distancegan"],
)
def test_each_loss_takes_a_batch_of_two_and_rejects_one(loss):
    z, images = column([0.0, 2.0]), column([0.0, 1.0])
    assert math.isfinite(float(loss(z, images)))
    with pytest.raises(ValueError, match=r"^the [a-z -]+ loss needs a batch of at least 2$"):
        loss(z[:1], images[:1])


def test_normalized_diversity_on_two_samples_and_its_default_margin():
    # two samples: each row normalises to (0, 1), so the loss is max(alpha - 1, 0) = 0 ...
    z, images = column([0.0, 2.0]), column([0.0, 1.0])
    assert float(mode_collapse.normalized_diversity_loss(z, images)) == 0.0
    # ... and with three, the default alpha is 0.8: rows of D^z (0, 1/4, 3/4), (1/3, 0, 2/3),
    # (3/5, 2/5, 0) against D^y of images at 0, 0, 1
    z, images = column([0.0, 1.0, 3.0]), column([0.0, 0.0, 1.0])
    dz = torch.tensor([[0, 1 / 4, 3 / 4], [1 / 3, 0, 2 / 3], [3 / 5, 2 / 5, 0]])
    dy = torch.tensor([[0, 0, 1], [0, 0, 1], [1 / 2, 1 / 2, 0]])
    expected = float(torch.relu(0.8 * dz - dy).sum() / 6)
    loss = mode_collapse.normalized_diversity_loss(z, images)  # float32 distances
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_normalized_diversity_ignores_the_scale_of_either_domain():
    """Row-normalised distances: scaling the latents or the images (to row sums far below 1,
    where the 1e-12 in the normaliser must not matter) leaves the loss unchanged."""
    torch.manual_seed(1)
    z, images = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, 2, dtype=torch.float64)
    reference = float(mode_collapse.normalized_diversity_loss(z, images))
    assert reference > 0
    for scale_z, scale_y in ((1e-3, 1.0), (1.0, 1e-4), (7.0, 1e-3)):
        loss = mode_collapse.normalized_diversity_loss(scale_z * z, scale_y * images)
        assert float(loss) == pytest.approx(reference, rel=1e-4)


def test_the_n_div_part_takes_its_margin_from_its_settings():
    [part] = build_parts([{"name": "nd", "kind": "ndiv", "weight": 3.0, "alpha": 0.5}])
    z, images = column([0.0, 1.0, 3.0]), column([0.0, 0.0, 1.0])
    expected = mode_collapse.normalized_diversity_loss(z, images, alpha=0.5)
    assert float(expected) != pytest.approx(
        float(mode_collapse.normalized_diversity_loss(z, images))
    )
    assert float(part.g_regularizer(z, images)) == pytest.approx(3 * float(expected))
    assert part.stats() == {"ndiv_loss": pytest.approx(float(expected))}


def test_distances_of_vectors_are_l2_for_n_div_and_mean_absolute_for_distancegan():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, -2.0]])
    expected_l2 = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    torch.testing.assert_close(mode_collapse.euclidean_distances(x), expected_l2)
    expected_l1 = torch.tensor([[0.0, 5 / 3], [5 / 3, 0.0]])
    torch.testing.assert_close(mode_collapse.pairwise_mean_abs(x), expected_l1)
    assert mode_collapse.distance_statistics(x) == pytest.approx((5 / 3, 0.0))


def test_gaussian_distance_statistics_closed_form():
    mean, std = mode_collapse.gaussian_distance_statistics(8)
    assert mean == pytest.approx(2 / math.sqrt(math.pi), rel=1e-12)
    assert std == pytest.approx(math.sqrt((2 - 4 / math.pi) / 8), rel=1e-12)


def test_distance_preservation_with_identical_training_images_divides_by_1e_minus_8():
    """A zero image deviation (identical training images) is guarded by 1e-8."""
    z, images = column([0.0, 1.0]), column([0.0, 3e-8])
    loss = mode_collapse.distance_preservation_loss(z, images, (0.5, 2.0), (1e-8, 0.0))
    # latent pair: (1 - 0.5) / 2 = 0.25; image pair: (3e-8 - 1e-8) / 1e-8 = 2
    assert float(loss) == pytest.approx(1.75, rel=1e-6)


def test_distance_statistics_of_two_samples_and_their_guards():
    assert mode_collapse.distance_statistics(column([1.0, 4.0])) == pytest.approx((3.0, 0.0))
    with pytest.raises(ValueError, match="^distance statistics need at least 2 samples$"):
        mode_collapse.distance_statistics(column([1.0]))
    [part] = build_parts([{"name": "dg", "kind": "distancegan", "weight": 1.0,
                           "statistics_images": 900}])  # fmt: skip
    with pytest.raises(RuntimeError, match="^part dg: set_training_images was not called$"):
        part.g_regularizer(column([0.0, 1.0]), column([0.0, 1.0]))
    with pytest.raises(ValueError, match="^part dg: DistanceGAN needs at least 2 training images$"):
        part.set_training_images(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    two = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    two[1] = 255  # images at -1 and 1: one pair, mean |difference| 2
    part.set_training_images(two)
    assert part.image_statistics == pytest.approx((2.0, 0.0))


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


def test_a_regularizer_of_weight_zero_trains_exactly_like_the_plain_method_without_mixed_g_steps(
    minimal_config, data, tmp_path, monkeypatch
):
    """The regularizer draws no random numbers and its G steps make their images without style
    mixing: at weight 0 the run equals plain DiffAugment with unmixed G steps, not plain
    DiffAugment itself (whose G steps mix), and at weight 1 it differs (the term reaches G)."""
    plain = tiny_spec(minimal_config, kimg=0.032)
    train_gan(plain, paths(data, tmp_path / "plain"), LOG)
    with monkeypatch.context() as patch:  # plain DiffAugment whose G steps do not mix
        patch.setattr(DiffAugment, "regularizes_g", True)
        train_gan(plain, paths(data, tmp_path / "unmixed"), LOG)
    for weight, run in ((0.0, "zero"), (1.0, "one")):
        spec = regularized_spec(minimal_config, "msgan", weight)
        spec["backbone"]["train"]["kimg"] = 0.032
        train_gan(spec, paths(data, tmp_path / run), LOG)
    reference = final_generator(tmp_path / "unmixed")
    assert same_tensors(reference, final_generator(tmp_path / "zero"))
    assert not same_tensors(reference, final_generator(tmp_path / "one"))
    assert not same_tensors(final_generator(tmp_path / "plain"), reference)


@pytest.mark.parametrize("kind", ["msgan", None])
def test_regularized_g_steps_make_their_images_from_z_alone(minimal_config, data, tmp_path, kind):
    """With style mixing on every sample (probability 1), a standard G step of a regularized
    run synthesises ws = mapping(z) on every layer for the z its regularizer gets (MSGAN's,
    N-Div's and DistanceGAN's code have no style mixing); without a regularizer it mixes."""
    spec = regularized_spec(minimal_config, kind) if kind else tiny_spec(minimal_config)
    spec["backbone"]["train"]["style_mixing"] = 1.0
    trainer = GANTrainer(spec, paths(data, tmp_path), LOG)
    seen = {}
    synthesis = trainer.synthesis_main

    def spy_synthesis(ws, **kwargs):
        seen.setdefault("ws", ws.detach().clone())  # the G step's, the first of the step
        return synthesis(ws, **kwargs)

    trainer.synthesis_main = spy_synthesis
    if kind:
        [_, part] = trainer.parts
        loss = part.loss

        def spy_loss(latents, images):
            seen["w"] = trainer.G.mapping(latents, None).detach()
            return loss(latents, images)

        part.loss = spy_loss
    trainer.step = 1  # no R1, no path length
    trainer.train_step()
    ws = seen["ws"]
    unmixed = torch.equal(ws, ws[:, :1].expand_as(ws))
    assert unmixed == (kind is not None)
    if kind:
        torch.testing.assert_close(ws, seen["w"])
