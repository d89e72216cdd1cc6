"""SinCUT: the networks against the official ones (parameter counts, outputs), the losses
against hand-computed values, the trainer (hook, schedule, exact resume), the patch sampler and
the test-time translation."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch

from mixgan.nets.sincut import (
    PatchSampleF,
    SinCUTDiscriminator,
    SinCUTGenerator,
    UpsampleStyledConv,
    copy_official_parameters,
    count_parameters,
    discriminator_channels,
    generator_channels,
    l2_normalize,
)
from mixgan.train.sincut import (
    SinCUTSettings,
    SinCUTTrainer,
    discriminator_gan_loss,
    generator_loss,
    identity_l1_loss,
    lr_factor,
    multilayer_nce_loss,
    nonsaturating_loss,
    patch_nce_loss,
    r1_penalty,
)
from mixgan.train.sincut_data import (
    grid_crop_origin,
    power_of_2_size,
    sample_patches,
    translate,
    zoomed_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")

#: The official networks with SinCUT's defaults (``--model sincut``: netG/netD stylegan2, ngf
#: 10, ndf 8, stylegan2_G_num_downsampling 1, netF mlp_sample with netF_nc 256 on nce_layers
#: 0,2,4; load_size 1024), instantiated from taesungp/contrastive-unpaired-translation (commit
#: b3ac297, models/networks.py define_G/define_D/define_F) in a scratch script with torch at 1
#: thread, F built by one forward pass as the official data_dependent_initialize does:
#: {crop_size: {net: (parameters, parameter tensors)}}. The widths follow the crop (64 is
#: SinCUT's crop_size, 128 ScoreMix's patch size). The same script loaded their randomly
#: initialised weights into ours (copy_official_parameters) and found equal outputs (max
#: difference <= 6e-7 for G, its encoder features, D and F at 32², 64² and 128², and for a
#: non-square 36x52 input), the same noise draws under one RNG state, and one official training
#: iteration (SinCUTModel.optimize_parameters, batch 4 at 64²) equal to
#: SinCUTTrainer.train_step: every loss term to 1e-5 and every gradient of G, D and F to 4e-4
#: relative, over two iterations.
OFFICIAL_COUNTS = {
    64: {"G": (3_068_404, 36), "D": (5_885_473, 28), "F": (280_832, 12)},
    128: {"G": (767_804, 36), "D": (5_892_881, 33), "F": (239_872, 12)},
}

#: Outputs of the official networks at crop_size 32 with ngf 1, ndf 1, netF_nc 16 after
#: filling their parameters in order from torch.Generator().manual_seed(1) (randn, times 0.1
#: for biases and other tensors with fewer than 2 non-singleton axes; the noise strength 0), on
#: x = randn(2, 3, 32, 32) from seed 2, with 5 positions per layer from randperm (seed 3).
OFFICIAL_TINY = {
    "counts": (123_188, 141_769, 1_936),
    "g_mean": 0.3050954043865204,
    "g_std": 0.7742947340011597,
    "g_pixel": [-0.27948305010795593, -0.15224143862724304, 1.2640451192855835],
    "g_last": 0.7935935258865356,
    "enc_sum": [72.34989929199219, 2677.39599609375, 5149.44921875],
    "enc_abs_sum": [4842.0234375, 6067.69091796875, 6854.2294921875],
    "d": [-0.0623910091817379, -0.0653294026851654],
    "f_sum": [0.53513503074646, -4.462359428405762, 0.7458523511886597],
    "f_row": [0.08606839925050735, -0.21219369769096375, 0.10230600833892822, 0.10771220922470093],
}

TINY = SinCUTSettings(
    patch_size=32, ngf=1, ndf=1, netf_nc=8, batch_size=2, dataset_length=2, n_epochs=1,
    n_epochs_decay=3,
)  # fmt: skip


def official_fill(*modules: torch.nn.Module) -> None:
    """Fill the parameters in order as the reference script filled the official ones."""
    gen = torch.Generator().manual_seed(1)
    for module in modules:
        values = []
        for name, param in module.named_parameters():
            scale = 1.0 if param.squeeze().ndim >= 2 else 0.1
            value = (torch.randn(param.numel(), generator=gen) * scale).reshape(param.shape)
            values.append(value * 0 if name.endswith("noise_strength") else value)
        copy_official_parameters(module, values)


# ----------------------------------------------------------------------------------------------
# Networks.


@pytest.mark.parametrize("patch_size", [64, 128])
def test_parameter_counts_equal_the_official_ones(patch_size: int) -> None:
    with torch.device("meta"):
        G = SinCUTGenerator(patch_size)
        D = SinCUTDiscriminator(patch_size)
        F = PatchSampleF(G.nce_channels())
    for name, net in (("G", G), ("D", D), ("F", F)):
        count, tensors = OFFICIAL_COUNTS[patch_size][name]
        assert count_parameters(net) == count, name
        assert len(list(net.parameters())) == tensors, name


def test_channel_tables() -> None:
    g = generator_channels(10)
    assert (g[128], g[64], g[32], g[16], g[4]) == (40, 80, 160, 320, 512)
    d = discriminator_channels(8)
    assert (d[128], d[64], d[32], d[16], d[8], d[4]) == (16, 32, 64, 128, 256, 384)


def test_outputs_equal_the_official_networks() -> None:
    G = SinCUTGenerator(32, ngf=1)
    D = SinCUTDiscriminator(32, ndf=1)
    F = PatchSampleF(G.nce_channels(), nc=16)
    ref = OFFICIAL_TINY
    assert tuple(count_parameters(m) for m in (G, D, F)) == ref["counts"]
    official_fill(G, D, F)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = G(x)
        feats = G.encode(x, (0, 2, 4))
        logits = D(x)
        ids = [
            torch.randperm(f.shape[2] * f.shape[3], generator=torch.Generator().manual_seed(3))[:5]
            for f in feats
        ]
        pooled, used = F(feats, 5, ids)
    close = dict(rel=1e-5, abs=1e-5)
    assert y.mean().item() == pytest.approx(ref["g_mean"], **close)
    assert y.std().item() == pytest.approx(ref["g_std"], **close)
    assert y[0, :, 3, 5].tolist() == pytest.approx(ref["g_pixel"], **close)
    assert y[1, 2, 31, 0].item() == pytest.approx(ref["g_last"], **close)
    assert [f.sum().item() for f in feats] == pytest.approx(ref["enc_sum"], rel=1e-5)
    assert [f.abs().sum().item() for f in feats] == pytest.approx(ref["enc_abs_sum"], rel=1e-5)
    assert logits.flatten().tolist() == pytest.approx(ref["d"], rel=1e-5, abs=1e-7)
    assert [p.sum().item() for p in pooled] == pytest.approx(ref["f_sum"], rel=1e-5, abs=1e-6)
    assert pooled[1][3, :4].tolist() == pytest.approx(ref["f_row"], **close)
    assert all(torch.equal(a, b) for a, b in zip(used, ids, strict=True))


def test_shapes_and_nce_layers_at_128() -> None:
    with torch.device("meta"):
        G = SinCUTGenerator()
        D = SinCUTDiscriminator()
        x = torch.empty(4, 3, 128, 128)
        assert G(x).shape == (4, 3, 128, 128)
        feats = G.encode(x)
        assert [tuple(f.shape) for f in feats] == [(4, 3, 128, 128)] + [(4, 80, 64, 64)] * 2
        assert G.nce_channels() == [3, 80, 80]
        assert D(x).shape == (4, 1)
    with pytest.raises(ValueError, match="expected images"):
        SinCUTDiscriminator(32, ndf=1)(torch.zeros(1, 3, 64, 64))


def test_encode_returns_the_requested_layers() -> None:
    torch.manual_seed(0)
    G = SinCUTGenerator(32, ngf=1)
    x = torch.randn(2, 3, 32, 32)
    feats = G.encode(x, (0, 1, 2, 3, 4, 5))
    assert torch.equal(feats[0], x)  # layer 0 is the input itself (nn.Identity)
    assert [f.shape[1:] for f in feats[1:]] == [(16, 32, 32)] + [(32, 16, 16)] * 4
    manual = G.encoder[2](G.encoder[1](x))
    torch.testing.assert_close(feats[2], manual, rtol=0, atol=0)
    reordered = G.encode(x, (4, 0))
    assert torch.equal(reordered[0], feats[4]) and torch.equal(reordered[1], x)
    with pytest.raises(ValueError, match="layers"):
        G.encode(x, (6,))
    y = G(torch.randn(1, 3, 36, 52))  # fully convolutional: any even size
    assert y.shape == (1, 3, 36, 52)
    with pytest.raises(ValueError, match="divisible"):
        G(torch.randn(1, 3, 35, 52))


def test_upsampling_conv_noise() -> None:
    torch.manual_seed(0)
    conv = UpsampleStyledConv(4, 2)
    x = torch.randn(1, 4, 5, 6)
    assert conv(x).shape == (1, 2, 10, 12)
    base = conv(x)
    assert torch.equal(base, conv(x))  # zero noise strength at init: no effect
    with torch.no_grad():
        conv.noise_strength.fill_(0.5)
    a = conv(x, torch.Generator().manual_seed(1))
    b = conv(x, torch.Generator().manual_seed(1))
    c = conv(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the demodulated weight has unit norm per output channel
    w = conv.weight * conv.weight_gain
    w = w * (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()
    torch.testing.assert_close(w.square().sum(dim=(1, 2, 3)), torch.ones(2))


def test_patch_sample_f() -> None:
    torch.manual_seed(0)
    F = PatchSampleF([3, 5], nc=256)
    std = F.mlp_1[0].weight.std().item()
    assert std == pytest.approx(0.02 * math.sqrt(2 / (5 + 256)), rel=0.1)  # xavier_normal gain
    assert F.mlp_1[0].bias.abs().sum() == 0
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 3)]
    gen = torch.Generator().manual_seed(0)
    out, ids = F(feats, 3, generator=gen)
    assert [tuple(o.shape) for o in out] == [(6, 256), (6, 256)]
    torch.testing.assert_close(out[0].norm(dim=1), torch.ones(6), atol=1e-3, rtol=0)  # +1e-7
    assert [len(set(i.tolist())) for i in ids] == [3, 3]  # without replacement
    # image-major rows; the same positions in every image
    flat = feats[1].permute(0, 2, 3, 1).flatten(1, 2)
    expected = l2_normalize(F.mlp_1(flat[:, ids[1]].flatten(0, 1)))
    torch.testing.assert_close(out[1], expected)
    again, ids2 = F(feats, 3, ids)
    assert all(torch.equal(a, b) for a, b in zip(again, out, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(ids, ids2, strict=True))


# ----------------------------------------------------------------------------------------------
# Losses.


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def cross_entropy_first(logits: list[float]) -> float:
    return -logits[0] + math.log(sum(math.exp(v) for v in logits))


def test_patch_nce_loss_hand_computed() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    t = 0.07
    # all negatives of the minibatch: row i's own key on the diagonal becomes -10
    expected_all = [
        cross_entropy_first([1.0 / t, -10.0 / t, 0.6 / t]),
        cross_entropy_first([0.8 / t, 0.0 / t, -10.0 / t]),
    ]
    got = patch_nce_loss(q, k, batch_size=2, all_negatives_from_minibatch=True)
    assert got.tolist() == pytest.approx(expected_all, rel=1e-8)
    # one patch per image, negatives from the same image: only the masked diagonal remains
    expected_own = [
        cross_entropy_first([1.0 / t, -10.0 / t]),
        cross_entropy_first([0.8 / t, -10 / t]),
    ]
    got = patch_nce_loss(q, k, batch_size=2, all_negatives_from_minibatch=False)
    assert got.tolist() == pytest.approx(expected_own, rel=1e-8)


def test_patch_nce_loss_groups_negatives_by_image() -> None:
    # 2 images x 2 patches, image-major; temperature 0.5
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]], dtype=torch.float64)
    k = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=torch.float64)
    t = 0.5
    own = [
        [0.0, -10.0, 1.0],  # q0: pos q0.k0, negatives (k0 masked, k1)
        [0.0, 1.0, -10.0],  # q1: pos q1.k1 = 0, negatives (k0 = 1, k1 masked)
        [0.96, -10.0, 1.0],  # q2: pos q2.k2, negatives (k2 masked, k3)
        [0.0, 0.28, -10.0],  # q3: pos q3.k3, negatives (k2, k3 masked)
    ]
    expected = [cross_entropy_first([v / t for v in row]) for row in own]
    got = patch_nce_loss(q, k, batch_size=2, all_negatives_from_minibatch=False, temperature=t)
    assert got.tolist() == pytest.approx(expected, rel=1e-8)
    dots = q @ k.T
    everything = [
        [dots[i, i].item()] + [-10.0 if j == i else dots[i, j].item() for j in range(4)]
        for i in range(4)
    ]
    expected = [cross_entropy_first([v / t for v in row]) for row in everything]
    got = patch_nce_loss(q, k, batch_size=2, all_negatives_from_minibatch=True, temperature=t)
    assert got.tolist() == pytest.approx(expected, rel=1e-8)


def test_patch_nce_keys_are_detached() -> None:
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(4, 3, requires_grad=True)
    patch_nce_loss(q, k, 4, True).sum().backward()
    assert k.grad is None and q.grad is not None and q.grad.abs().sum() > 0


def test_multilayer_nce_loss() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    t = 0.07
    layer1 = (
        cross_entropy_first([1 / t, -10 / t, 0.6 / t]) + cross_entropy_first([0.8 / t, 0, -10 / t])
    ) / 2
    layer2 = (
        cross_entropy_first([1 / t, -10 / t, 0]) / 2 + cross_entropy_first([1 / t, 0, -10 / t]) / 2
    )
    got = multilayer_nce_loss([q, q], [k, q], 2, True, lambda_nce=4.0)
    assert got.item() == pytest.approx(4.0 * (layer1 + layer2) / 2, rel=1e-8)


def test_gan_losses_hand_computed() -> None:
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    assert nonsaturating_loss(real, True).item() == pytest.approx(
        (softplus(-2.0) + softplus(1.0)) / 2, rel=1e-6
    )
    assert nonsaturating_loss(real, False).item() == pytest.approx(
        (softplus(2.0) + softplus(-1.0)) / 2, rel=1e-6
    )
    expected = 0.5 * ((softplus(0.5) + softplus(-3.0)) / 2 + (softplus(-2.0) + softplus(1.0)) / 2)
    assert discriminator_gan_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # patch logits [N, 1, h, w] are averaged per image first
    patches = torch.tensor([[[[0.0, 1.0]]], [[[2.0, 2.0]]]])
    expected = ((softplus(0.0) + softplus(-1.0)) / 2 + softplus(-2.0)) / 2
    assert nonsaturating_loss(patches, True).item() == pytest.approx(expected, rel=1e-6)


def test_r1_penalty_hand_computed_and_differentiable() -> None:
    x = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 3.0]]]], requires_grad=True)
    w = torch.tensor(1.5, requires_grad=True)
    logits = (w * x.square()).flatten(1).sum(1, keepdim=True)  # d logits / dx = 2 w x
    penalty = r1_penalty(logits, x, lambda_r1=2.0)
    sq = [(2 * 1.5) ** 2 * (1 + 4), (2 * 1.5) ** 2 * (0.25 + 9)]
    assert penalty.item() == pytest.approx(2.0 * 0.5 * sum(sq) / 2, rel=1e-6)
    (grad_w,) = torch.autograd.grad(penalty, w)  # d/dw of lambda/2 * mean 4 w^2 sum x^2
    assert grad_w.item() == pytest.approx(2.0 * 0.5 * 8 * 1.5 * (5 + 9.25) / 2, rel=1e-6)


def test_generator_loss_terms() -> None:
    one = torch.tensor
    assert generator_loss(one(1.0), one(2.0), one(4.0), one(0.5)).item() == 4.5
    assert generator_loss(one(1.0), one(2.0), None, None).item() == 3.0
    idt = identity_l1_loss(one([[1.0, -1.0]]), one([[0.0, 1.0]]), lambda_identity=2.0)
    assert idt.item() == pytest.approx(3.0)


def test_official_learning_rate_schedule() -> None:
    s = SinCUTSettings()
    assert (s.iterations_per_epoch, s.total_iterations) == (6250, 100_000)
    assert lr_factor(0, s) == 1.0 and lr_factor(8 * 6250 - 1, s) == 1.0
    assert lr_factor(8 * 6250, s) == pytest.approx(8 / 9)
    assert lr_factor(s.total_iterations - 1, s) == pytest.approx(1 / 9)


# ----------------------------------------------------------------------------------------------
# Trainer.


def patches(seed: int, count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(count, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))


def params(trainer: SinCUTTrainer) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().clone()
        for name, net in trainer.nets.items()
        for key, value in net.state_dict().items()
    }


#: The loss terms of 4 official iterations (SinCUTModel.optimize_parameters, then
#: update_learning_rate, with ``--crop_size 32 --ngf 1 --ndf 1 --netF_nc 8 --batch_size 2
#: --n_epochs 1 --n_epochs_decay 3``) run in the scratch script from SinCUTTrainer(TINY,
#: seed=0)'s initial weights, on patches(0..3), with np.random.permutation drawing from
#: torch.randperm on Generator().manual_seed(0) (our patch_rng) and the noise from the global
#: RNG seeded 0 (the stream of our noise_rng). Learning rates 0.002, 0.0015, 0.001, 0.0005.
OFFICIAL_ITERATIONS = [
    {"D/gan": 0.6976221799850464, "D/r1": 0.0022312651854008436, "G/gan": 0.7495226860046387,
     "G/nce": 13.379650115966797, "G/nce_idt": 3.598377227783203, "G/idt": 0.5174259543418884},
    {"D/gan": 0.6209617257118225, "D/r1": 0.0015774208586663008, "G/gan": 0.8386803865432739,
     "G/nce": 2.7672119140625, "G/nce_idt": 2.7833592891693115, "G/idt": 0.5211155414581299},
    {"D/gan": 0.5803795456886292, "D/r1": 0.0013875067234039307, "G/gan": 0.8786934614181519,
     "G/nce": 2.7757747173309326, "G/nce_idt": 2.7707912921905518, "G/idt": 0.5225529074668884},
    {"D/gan": 0.5624468326568604, "D/r1": 0.0020057098008692265, "G/gan": 0.8934707045555115,
     "G/nce": 2.758768320083618, "G/nce_idt": 2.7716739177703857, "G/idt": 0.5234693884849548},
]  # fmt: skip


def test_trainer_reproduces_official_iterations() -> None:
    trainer = SinCUTTrainer(TINY, seed=0)
    for step, official in enumerate(OFFICIAL_ITERATIONS):
        stats = trainer.train_step(*patches(step))
        assert stats["lr"] == pytest.approx(0.002 * (1 - step / 4))
        for key, value in official.items():
            assert stats[key] == pytest.approx(value, rel=1e-5), (step, key)
        terms = stats["G/gan"] + 0.5 * (stats["G/nce"] + stats["G/nce_idt"]) + stats["G/idt"]
        assert stats["G/total"] == pytest.approx(terms, rel=1e-6)


def test_train_step_updates_every_network() -> None:
    trainer = SinCUTTrainer(TINY, seed=0)
    before = params(trainer)
    stats = trainer.train_step(*patches(0))
    assert set(stats) == {"D/gan", "D/r1", "G/gan", "G/nce", "G/nce_idt", "G/idt", "G/total", "lr"}
    assert all(math.isfinite(v) for v in stats.values())
    assert stats["lr"] == 0.002
    after = params(trainer)
    for prefix in ("G.", "D.", "F."):
        changed = [
            k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])
        ]
        assert changed, prefix
    assert trainer.discriminator.out.weight.requires_grad  # D unfrozen after the G step
    assert trainer.train_step(*patches(1))["lr"] == pytest.approx(0.002 * 0.75)


def test_without_nce_idt() -> None:
    trainer = SinCUTTrainer(dataclasses.replace(TINY, nce_idt=False), seed=0)
    stats = trainer.train_step(*patches(0))
    assert "G/nce_idt" not in stats and "G/idt" not in stats
    assert stats["G/total"] == pytest.approx(stats["G/gan"] + stats["G/nce"], rel=1e-6)


def test_augment_inputs_hook_feeds_the_generator() -> None:
    source, target = patches(0)
    replacement = torch.rand(source.shape, generator=torch.Generator().manual_seed(9))
    seen: list[torch.Tensor] = []

    def hook(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return replacement

    hooked = SinCUTTrainer(TINY, seed=0, augment_inputs=hook)
    plain = SinCUTTrainer(TINY, seed=0)
    stats_hooked = hooked.train_step(source, target)
    assert len(seen) == 1 and torch.equal(seen[0], source)
    assert stats_hooked == plain.train_step(replacement, target)
    assert stats_hooked != SinCUTTrainer(TINY, seed=0).train_step(source, target)


def test_resume_is_bit_exact() -> None:
    batches = [patches(i) for i in range(4)]
    straight = SinCUTTrainer(TINY, seed=0)
    stats_straight = [straight.train_step(*b) for b in batches]

    first = SinCUTTrainer(TINY, seed=0)
    for b in batches[:2]:
        first.train_step(*b)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = SinCUTTrainer(TINY, seed=123)  # a different init, overwritten by the state
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.step == 2
    stats_resumed = [resumed.train_step(*b) for b in batches[2:]]
    assert stats_resumed == stats_straight[2:]
    assert [s["lr"] for s in stats_straight] == pytest.approx(
        [0.002 * f for f in (1, 0.75, 0.5, 0.25)]
    )
    a, b = params(straight), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other SinCUT settings"):
        SinCUTTrainer(SinCUTSettings(patch_size=32, ngf=1, ndf=1, netf_nc=8)).load_state_dict(
            straight.state_dict()
        )


# ----------------------------------------------------------------------------------------------
# Patches and translation.


def test_sample_patches_shapes_and_seeding() -> None:
    image = torch.rand(3, 200, 300) * 2 - 1
    out = sample_patches(image, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 3, 128, 128)
    again = sample_patches(image, generator=torch.Generator().manual_seed(0))
    other = sample_patches(image, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)
    small = sample_patches(image, 4, 32, torch.Generator().manual_seed(0), output_size=16)
    assert small.shape == (4, 3, 16, 16)


def test_patches_are_crops_or_mirrored_crops_at_zoom_1() -> None:
    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    windows = image.unfold(1, 16, 1).unfold(2, 16, 1)  # [3, 25, 41, 16, 16]

    def found(patch: torch.Tensor) -> bool:
        return bool((windows == patch[:, None, None]).all(-1).all(-1).all(0).any())

    gen = torch.Generator().manual_seed(0)
    plain = sample_patches(image, 16, 16, gen, random_scale_max=1.0, flip=False)
    assert all(found(p) for p in plain)
    flipped = sample_patches(image, 16, 16, gen, random_scale_max=1.0)
    direct = [found(p) for p in flipped]
    assert all(d or found(p.flip(-1)) for d, p in zip(direct, flipped, strict=True))
    assert 0 < sum(direct) < 16  # some mirrored, some not


def test_random_zoom_range() -> None:
    # a horizontal ramp: a patch's slope gives the zoomed width, 2 / slope per pixel
    ramp = torch.linspace(-1, 1 - 2 / 384, 384)
    image = ramp.expand(3, 384, 384).clone()
    out = sample_patches(image, 32, 64, torch.Generator().manual_seed(0), random_scale_max=3.0)
    slopes = (out[:, 0, :, 9:-9].diff(dim=-1)).abs().mean(dim=(1, 2))
    widths = 2 / slopes
    assert widths.min() >= 128 - 0.5 and widths.max() <= 384 + 0.5  # zoom in [1/3, 1]
    assert widths.max() - widths.min() > 150


def test_zoom_and_grid_helpers() -> None:
    assert zoomed_size(300, 200, (0.5, 0.34), 128) == (150, 128)
    assert zoomed_size(100, 90, (1.0, 1.0), 128) == (128, 128)  # never below the crop
    gen = torch.Generator().manual_seed(0)
    xs = set()
    for _ in range(200):
        x, y = grid_crop_origin(300, 200, 128, gen)
        assert 0 <= x <= 300 - 128 and 0 <= y <= 200 - 128
        xs.add(x >= 128)
    assert xs == {True, False}  # both cells of the 2 x 1 grid


def test_translate_full_resolution() -> None:
    assert power_of_2_size(37, 50) == (36, 48)
    assert power_of_2_size(38, 54) == (40, 56)  # halves round to even: 9.5 -> 10, 13.5 -> 14
    assert power_of_2_size(42, 10) == (40, 8)  # 10.5 -> 10, 2.5 -> 2
    torch.manual_seed(0)
    G = SinCUTGenerator(32, ngf=1)
    with torch.no_grad():
        G.decoder[3].noise_strength.fill_(0.3)
    image = torch.rand(3, 37, 50) * 2 - 1
    out = translate(G, image, torch.Generator().manual_seed(0))
    assert out.shape == (3, 36, 48) and not out.requires_grad
    assert out.min() >= -1 and out.max() <= 1
    exact = torch.rand(3, 32, 48) * 2 - 1
    with torch.no_grad():
        direct = G(exact[None], torch.Generator().manual_seed(4))[0].clamp(-1, 1)
    assert torch.equal(translate(G, exact, torch.Generator().manual_seed(4)), direct)
