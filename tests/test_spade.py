"""SPADE networks (mixgan.nets.spade) and losses (mixgan.train.spade_losses), ReMix's relative
perceptual loss included, against NVlabs/SPADE and ReMix (paper 003) Eq. 8-13."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from mixgan.nets.spade import (
    MultiscaleDiscriminator,
    SPADEGenerator,
    instance_edges,
    semantic_input,
)
from mixgan.train.spade_losses import (
    VGG_WEIGHTS,
    RelativeContentLoss,
    VGG19Slices,
    discriminator_losses,
    feature_matching_loss,
    generator_losses,
    hinge_d_loss,
    hinge_g_loss,
    mixed_target,
    relative_vgg_loss,
    remix_lambda,
    vgg_distance,
    vgg_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _conv(i: int, o: int, k: int, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def _official_counts(label_nc: int = 35, ngf: int = 64, ndf: int = 64) -> tuple[int, int]:
    """SPADEGenerator and MultiscaleDiscriminator counted from the official definitions."""
    s = label_nc + 1  # one-hot + instance edges

    def spade(c: int) -> int:  # mlp_shared 3x3 s->128, mlp_gamma and mlp_beta 3x3 128->c
        return _conv(s, 128, 3) + 2 * _conv(128, c, 3)

    def block(fin: int, fout: int) -> int:
        mid = min(fin, fout)
        n = _conv(fin, mid, 3) + _conv(mid, fout, 3) + spade(fin) + spade(mid)
        return n + (_conv(fin, fout, 1, bias=False) + spade(fin) if fin != fout else 0)

    nf = ngf
    g = _conv(s, 16 * nf, 3) + 3 * block(16 * nf, 16 * nf) + block(16 * nf, 8 * nf)
    g += block(8 * nf, 4 * nf) + block(4 * nf, 2 * nf) + block(2 * nf, nf) + _conv(nf, 3, 3)
    d_in = label_nc + 3 + 1
    one_d = _conv(d_in, ndf, 4) + _conv(ndf, 2 * ndf, 4, False) + _conv(2 * ndf, 4 * ndf, 4, False)
    one_d += _conv(4 * ndf, 8 * ndf, 4, False) + _conv(8 * ndf, 1, 4)
    return g, 2 * one_d


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("layers", ["more", "normal"])
def test_generator_parameter_count(layers):
    generator = SPADEGenerator(num_upsampling_layers=layers)
    assert _count(generator) == _official_counts()[0] == 93_048_003
    assert (generator.sw, generator.sh) == ((8, 4) if layers == "more" else (16, 8))


def test_discriminator_parameter_count_and_official_keys():
    discriminator = MultiscaleDiscriminator()
    assert _count(discriminator) == _official_counts()[1] == 5_601_410
    keys = discriminator.state_dict().keys()
    assert "discriminator_0.model0.0.weight" in keys  # first conv: no spectral norm
    assert "discriminator_1.model1.0.0.weight_orig" in keys  # SN conv inside (conv, IN)
    assert "discriminator_0.model1.0.0.bias" not in keys  # bias removed before the norm
    assert "discriminator_0.model4.0.bias" in keys
    generator_keys = SPADEGenerator(ngf=2, crop_size=128).state_dict().keys()
    for key in (
        "fc.weight",
        "head_0.conv_0.weight_orig",
        "up_0.conv_s.weight_orig",
        "up_0.norm_s.mlp_shared.0.weight",
        "G_middle_1.norm_1.mlp_gamma.bias",
        "conv_img.weight",
    ):
        assert key in generator_keys


def test_inputs_edges_and_tiny_forward():
    inst = torch.tensor([[[[1, 1, 2], [1, 1, 2], [3, 3, 3]]]])
    assert instance_edges(inst)[0, 0].tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    torch.manual_seed(0)
    label = torch.randint(0, 35, (2, 1, 64, 128))
    seg = semantic_input(label, torch.randint(0, 3, (2, 1, 64, 128)))
    assert seg.shape == (2, 36, 64, 128)
    assert torch.equal(seg[:, :35].argmax(1, keepdim=True), label)
    assert torch.equal(seg[:, :35].sum(1), torch.ones(2, 64, 128))
    for layers in ("more", "normal"):
        fake = SPADEGenerator(ngf=4, crop_size=128, num_upsampling_layers=layers)(seg)
        assert fake.shape == (2, 3, 64, 128) and fake.abs().max() <= 1
    d_out = MultiscaleDiscriminator(ndf=4)(torch.cat([seg, fake], 1))
    assert len(d_out) == 2 and [len(s) for s in d_out] == [5, 5]
    assert d_out[0][-1].shape[1] == 1 and d_out[1][0].shape[-1] == d_out[0][0].shape[-1] // 2 + 1


# ---- SPADE losses on hand-built discriminator outputs: [feature 1, feature 2, score]


def _preds(score0: list[float], score1: list[float], feats: list[list[float]]) -> list:
    f = [torch.tensor(v) for v in feats]
    return [[f[0], f[1], torch.tensor(score0)], [f[2], f[3], torch.tensor(score1)]]


def test_hinge_losses_hand_computed():
    preds = _preds([0.5, 2.0], [-1.0, 0.0], [[0.0]] * 4)
    # real: -mean(min(x - 1, 0)) per scale: 0.25, 1.5 -> 0.875
    assert hinge_d_loss(preds, real=True).item() == pytest.approx(0.875)
    # fake: -mean(min(-x - 1, 0)): 2.25, 0.5 -> 1.375
    assert hinge_d_loss(preds, real=False).item() == pytest.approx(1.375)
    # generator: -mean(x): -1.25, 0.5 -> -0.375
    assert hinge_g_loss(preds).item() == pytest.approx(-0.375)
    terms = discriminator_losses(preds, preds)
    assert terms["D_Fake"].item() == pytest.approx(1.375)
    assert terms["D_real"].item() == pytest.approx(0.875)


def test_feature_matching_hand_computed():
    fake = _preds([100.0], [100.0], [[1.0, 3.0], [2.0, 2.0], [0.5, 0.5], [4.0, 4.0]])
    real = _preds([0.0], [0.0], [[0.0, 2.0], [0.0, 4.0], [0.0, 0.0], [4.0, 4.0]])
    # L1 means 1, 2 (scale 0) and 0.5, 0 (scale 1), scores excluded; x 10 / num_D 2
    assert feature_matching_loss(fake, real).item() == pytest.approx((1 + 2 + 0.5 + 0) * 5)


def test_vgg_slices_are_relu1_1_to_relu5_1_and_the_loss_weights():
    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features
    vgg = VGG19Slices(features)
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ends = [features[:end](x) for end in (2, 7, 12, 21, 30)]
        got = vgg(x)
        assert all(torch.equal(a, b) for a, b in zip(ends, got, strict=True))
        official = sum(
            w * nn.L1Loss()(a, b)
            for w, a, b in zip([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1], vgg(x), vgg(y), strict=True)
        )
        assert vgg_loss(vgg, x, y).item() == pytest.approx(10 * official.item(), rel=1e-5)
    vgg.train()
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())


def test_vgg_distance_per_sample_hand_computed():
    fx = [
        torch.full((2, 1, 2, 2), 32.0),
        torch.full((2, 4), 16.0),
        torch.full((2, 1), 8.0),
        torch.full((2, 3), 4.0),
        torch.full((2, 1), 1.0),
    ]
    fx = [torch.stack([f[0], 2 * f[1]]) for f in fx]  # sample 1 twice as far
    fy = [torch.zeros_like(f) for f in fx]
    assert vgg_distance(fx, fy).tolist() == pytest.approx([5.0, 10.0])  # each term w * 1/w
    assert sum(VGG_WEIGHTS) == pytest.approx(1.46875)


# ---- ReMix (Eq. 8-13)


def test_relative_loss_hand_computed():
    relative = RelativeContentLoss()
    d1, d2 = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([1.0, 1.0, 0.4])
    # L_p = mean(max(0, d1 - d2)) = mean(0, 1, 0.6); L_n = mean(max(0, d2 - 0)) = 0.8
    assert relative(d1, d2).item() == pytest.approx(1.6 / 3 + 0.8)
    relative.a_bar.fill_(0.9)
    # L_n = mean(max(0, d2 - 0.9)) = mean(0.1, 0.1, 0)
    assert relative(d1, d2).item() == pytest.approx(1.6 / 3 + 0.2 / 3)
    # swapped roles: L_p = mean(0.5, 0, 0), L_n = mean(0, 1.1, 0.1); with a_bar = 0 the sum
    # is mean(max(d1, d2)) either way, so the roles only show once a_bar > 0
    assert relative(d2, d1).item() == pytest.approx(0.5 / 3 + 1.2 / 3)


def test_momentum_update_paper_and_ema():
    paper, ema = RelativeContentLoss(), RelativeContentLoss(update="ema")
    for module in (paper, ema):
        module.update(torch.tensor([2.0, 2.0]))
    assert paper.a_bar.item() == pytest.approx(0.02) and ema.a_bar.item() == pytest.approx(0.02)
    paper.update(torch.tensor(2.0))
    ema.update(torch.tensor(2.0))
    assert paper.a_bar.item() == pytest.approx(0.99 * 0.02 + 0.01 * (2 - 0.02))  # Eq. 11
    assert ema.a_bar.item() == pytest.approx(0.99 * 0.02 + 0.01 * 2)
    for _ in range(3000):
        paper.update(torch.tensor(2.0))
        ema.update(torch.tensor(2.0))
    assert paper.a_bar.item() == pytest.approx(1.0, abs=1e-4)  # Eq. 11's fixed point: a / 2
    assert ema.a_bar.item() == pytest.approx(2.0, abs=1e-4)


class _Identity5(nn.Module):
    """A stand-in loss network: five copies of its input, so d = 1.46875 * mean |x - y|."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x] * 5


def test_relative_vgg_loss_and_margin_update_hand_computed():
    relative = RelativeContentLoss()
    fake = torch.tensor([0.0, 4.0]).view(2, 1, 1, 1).requires_grad_()
    t1 = torch.tensor([1.0, 4.0]).view(2, 1, 1, 1)
    t2 = torch.tensor([3.0, 5.0]).view(2, 1, 1, 1)
    w = 1.46875
    loss = relative_vgg_loss(_Identity5(), relative, fake, t1, t2, partner=torch.tensor([1, 0]))
    # d1 = w [1, 0], d2 = w [3, 1]: L_p = 0, L_n = mean(d2 - 0) = 2w; x lambda_vgg 10
    assert loss.item() == pytest.approx(10 * 2 * w)
    # a = mean(d(s'_0, t2_1), d(s'_1, t2_0)) = w mean(5, 1) = 3w; a_bar = 0.01 a
    assert relative.a_bar.item() == pytest.approx(0.01 * 3 * w)
    loss.backward()
    assert fake.grad is not None and not relative.a_bar.requires_grad


def test_mixed_targets_and_lambda():
    t1, t2 = torch.ones(2), torch.zeros(2)
    assert mixed_target(t1, t2, 0.7, "mixup").tolist() == pytest.approx([0.7, 0.7])  # Eq. 12
    assert mixed_target(t1, t2, 0.7, "wm") is t1  # Eq. 13
    assert mixed_target(t1, t2, 0.3, "wm") is t2
    with pytest.raises(ValueError, match="unknown"):
        mixed_target(t1, t2, 0.5, "cutmix")  # type: ignore[arg-type]
    lams = [remix_lambda(generator=torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(0.5 <= lam <= 1 for lam in lams)
    assert lams[3] == remix_lambda(generator=torch.Generator().manual_seed(3))


def test_generator_losses_sum_the_three_spade_terms():
    fake = _preds([1.0], [3.0], [[1.0, 3.0], [2.0, 2.0], [0.5, 0.5], [4.0, 4.0]])
    real = _preds([0.0], [0.0], [[0.0, 2.0], [0.0, 4.0], [0.0, 0.0], [4.0, 4.0]])
    image, target = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0)
    terms = generator_losses(fake, real, _Identity5(), image, target)
    assert terms["GAN"].item() == pytest.approx(-2.0)
    assert terms["GAN_Feat"].item() == pytest.approx(17.5)
    assert terms["VGG"].item() == pytest.approx(10 * 1.46875 * 2)
