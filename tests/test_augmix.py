"""Batched AugMix against torchvision's v2.AugMix: every operation and magnitude, whole calls
with torchvision's own draws replayed, the distribution of our draws, seeding."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from mixgan.augment.augmix import (
    OPS,
    SIGNED,
    AugMixDraws,
    apply_step,
    augmix,
    draw,
    magnitude,
    magnitudes,
)
from mixgan.augment.mixing import make_augmix


def uint8_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def torchvision_draws(seed: int, size: int, severity: int = 3, width: int = 3) -> AugMixDraws:
    """The draws torchvision's ``AugMix.forward`` makes for one image after
    ``torch.manual_seed(seed)``, in its order (Beta, Dirichlet, then per chain the depth and per
    step the op, the magnitude bin and, for signed ops, the sign)."""
    torch.manual_seed(seed)
    mix = torch._sample_dirichlet(torch.tensor([1.0, 1.0]).expand(1, -1))
    weights = torch._sample_dirichlet(torch.tensor([1.0] * width).expand(1, -1)) * mix[:, 1:2]
    depth = torch.zeros(width, 1, dtype=torch.long)
    ops, levels = (
        torch.zeros(width, 3, 1, dtype=torch.long),
        torch.zeros(width, 3, 1, dtype=torch.long),
    )
    negative = torch.zeros(width, 3, 1, dtype=torch.bool)
    for chain in range(width):
        depth[chain] = int(torch.randint(low=1, high=4, size=(1,)).item())
        for step in range(int(depth[chain])):
            ops[chain, step] = int(torch.randint(len(OPS), ()))
            op = OPS[int(ops[chain, step])]
            if magnitudes(op, size, size) is not None:
                levels[chain, step] = int(torch.randint(severity, ()))
                negative[chain, step] = op in SIGNED and bool(torch.rand(()) <= 0.5)
    return AugMixDraws(mix, weights, depth, ops, levels, negative)


def test_every_operation_at_every_magnitude_equals_torchvisions_on_that_image():
    reference = v2.AugMix()
    cases = [
        (k, level, negative)
        for k in range(len(OPS))
        for level in range(3)
        for negative in ((False, True) if OPS[k] in SIGNED else (False,))
    ]
    x = uint8_images(len(cases), size=20, seed=1)
    ops, levels, negative = (torch.tensor(column) for column in zip(*cases, strict=True))
    out = apply_step(x, ops, levels, negative, torch.ones(len(cases), dtype=torch.bool))
    for i, (k, level, sign) in enumerate(cases):
        value = magnitude(OPS[k], level, sign, 20, 20)
        expected = reference._apply_image_or_video_transform(
            x[i : i + 1], OPS[k], value, interpolation=reference.interpolation,
            fill=reference._fill,
        )  # fmt: skip
        assert torch.equal(out[i : i + 1], expected), (OPS[k], level, sign)
    # images whose chain has ended pass through
    idle = apply_step(x, ops, levels, negative, torch.zeros(len(cases), dtype=torch.bool))
    assert torch.equal(idle, x)


def test_a_forced_one_op_chain_of_weight_one_is_that_op():
    x = uint8_images(2, seed=2)
    draws = AugMixDraws(
        mix=torch.tensor([[0.0, 1.0]] * 2), weights=torch.ones(2, 1),
        depth=torch.ones(1, 2, dtype=torch.long), ops=torch.tensor([[[4, 10]]]),
        levels=torch.tensor([[[2, 1]]]), negative=torch.tensor([[[True, False]]]),
    )  # fmt: skip
    out = augmix(x, draws)
    import torchvision.transforms.v2.functional as TF

    rotated = TF.rotate(x[:1], -float(torch.linspace(0.0, 30.0, 10)[2]), interpolation="bilinear")
    assert torch.equal(out[:1], rotated)  # Rotate, bin 2, negative
    saturated = TF.adjust_saturation(x[1:], 1.0 + float(torch.linspace(0.0, 0.9, 10)[1]))
    assert torch.equal(out[1:], saturated)  # Color, bin 1


@pytest.mark.parametrize("size", [16, 23])
def test_whole_augmix_calls_equal_torchvisions_with_its_own_draws(size):
    reference = v2.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=True)
    x = uint8_images(40, size, seed=size)
    draws = [torchvision_draws(seed, size) for seed in range(40)]
    batched = AugMixDraws(
        *(torch.cat([getattr(d, f) for d in draws], dim=0) for f in ("mix", "weights")),
        *(torch.cat([getattr(d, f) for d in draws], dim=-1) for f in ("depth", "ops")),
        *(torch.cat([getattr(d, f) for d in draws], dim=-1) for f in ("levels", "negative")),
    )
    ours = augmix(x, batched)  # all 40 at once (in CPU chunks)
    for seed in range(40):
        torch.manual_seed(seed)
        assert torch.equal(ours[seed], reference(x[seed])), seed


def test_our_draws_have_torchvisions_distributions():
    d = draw(6000, generator=torch.Generator().manual_seed(0))
    assert d.ops.shape == d.levels.shape == d.negative.shape == (3, 3, 6000)
    torch.testing.assert_close(d.weights.sum(1), d.mix[:, 1])  # chains share the Beta's part
    assert float(d.mix[:, 0].mean()) == pytest.approx(0.5, abs=0.02)  # Beta(1, 1) = U(0, 1)
    assert float(d.mix[:, 0].var()) == pytest.approx(1 / 12, abs=0.005)
    chains = d.weights / d.mix[:, 1:2]  # Dir(1, 1, 1): each marginal Beta(1, 2), mean 1/3
    assert chains.mean(0).tolist() == pytest.approx([1 / 3] * 3, abs=0.02)
    for values, count in ((d.depth - 1, 3), (d.ops, len(OPS)), (d.levels, 3)):
        frequencies = torch.bincount(values.flatten(), minlength=count) / values.numel()
        assert frequencies.tolist() == pytest.approx([1 / count] * count, abs=0.015)
    assert float(d.negative.float().mean()) == pytest.approx(0.5, abs=0.01)
    fixed = draw(10, depth=2, generator=torch.Generator().manual_seed(0))
    assert (fixed.depth == 2).all() and fixed.ops.shape[1] == 2
    partial = draw(2000, all_ops=False, generator=torch.Generator().manual_seed(0))
    assert int(partial.ops.max()) == 8  # the 9 ops of all_ops=False
    with pytest.raises(ValueError, match="severity"):
        draw(1, severity=11)


def test_the_mixer_is_seeded_by_its_generator_and_keeps_the_range():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mixer = make_augmix()
    a = mixer(x, x, torch.ones(6), torch.Generator().manual_seed(3))
    b = mixer(x, x.flip(0), torch.zeros(6), torch.Generator().manual_seed(3))
    c = mixer(x, x, torch.ones(6), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == x.dtype and a.min() >= 0 and a.max() <= 1
    torch.manual_seed(9)  # no generator: the global RNG (checkpointed by the trainer)
    d = mixer(x, x, torch.ones(6))
    torch.manual_seed(9)
    assert torch.equal(mixer(x, x, torch.ones(6)), d)
