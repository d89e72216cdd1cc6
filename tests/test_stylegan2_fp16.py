"""NVIDIA's mixed precision of StyleGAN2 (num_fp16_res, conv_clamp) on the CPU: the clamp, the
FP16 blocks, their dtypes, and how close they stay to float32."""

from __future__ import annotations

import math

import pytest
import torch

from mixgan.nets.stylegan2 import (
    FP16_CONV_CLAMP,
    Conv2dLayer,
    Discriminator,
    Generator,
    SynthesisLayer,
    ToRGBLayer,
    bias_act,
    fp16_resolution,
    modulated_conv2d,
)

SMALL = dict(channel_base=1024, channel_max=64)
LATENT = dict(z_dim=32, w_dim=32)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bias_act_clamps_after_the_activation_and_gain_as_nvidia() -> None:
    x = torch.tensor([300.0, -300.0, 100.0, -1000.0])
    root2 = math.sqrt(2.0)
    # lrelu (slope 0.2) x sqrt(2): 424.26, -84.85, 141.42, -282.84; clamped to +-256
    out = bias_act(x, None, "lrelu", clamp=256.0)
    expected = torch.tensor([256.0, -60.0 * root2, 100.0 * root2, -256.0])
    torch.testing.assert_close(out, expected)
    # a linear layer (toRGB) is clamped alone
    torch.testing.assert_close(
        bias_act(x, None, clamp=256.0), torch.tensor([256, -256, 100, -256.0])
    )


def test_conv_layer_clamp_scales_with_the_layer_gain() -> None:
    """NVIDIA's Conv2dLayer: act_gain = sqrt(2) x gain, act_clamp = conv_clamp x gain, so D's
    residual branch (gain sqrt(0.5)) is clamped at 256 sqrt(0.5) = 181.02."""
    layer = Conv2dLayer(1, 1, 1, activation="lrelu", conv_clamp=FP16_CONV_CLAMP)
    with torch.no_grad():
        layer.weight.fill_(1.0)  # weight_gain 1 / sqrt(1 x 1 x 1) = 1: the conv is identity
        layer.bias.fill_(10.0)
    x = torch.tensor([290.0, -310.0, 90.0, -990.0]).view(1, 1, 1, 4)
    # + bias 10: 300, -300, 100, -980; lrelu x sqrt(2) x sqrt(0.5) = lrelu: 300, -60, 100, -196;
    # clamped to +-181.02
    out = layer(x, gain=math.sqrt(0.5)).flatten()
    clamp = 256.0 * math.sqrt(0.5)
    torch.testing.assert_close(out, torch.tensor([clamp, -60.0, 100.0, -clamp]))
    torch.testing.assert_close(
        layer(x).flatten(),
        torch.tensor([256.0, -60.0 * math.sqrt(2), 100.0 * math.sqrt(2), -256.0]),
    )


def test_every_convolution_of_d_is_clamped_at_256() -> None:
    torch.manual_seed(0)
    images = torch.randn(4, 3, 16, 16) * 1e4  # large enough to exceed the clamp everywhere
    bounds = {}
    for clamp in (None, FP16_CONV_CLAMP):
        torch.manual_seed(1)
        D = Discriminator(img_resolution=16, conv_clamp=clamp, **SMALL)
        features: dict[str, torch.Tensor] = {}
        D(images, None, features)
        bounds[clamp] = max(f.abs().max().item() for k, f in features.items() if k != "b4.fc")
    assert bounds[None] > 1000  # unclamped, the activations grow far beyond 256
    assert bounds[FP16_CONV_CLAMP] <= 256.0 * (1 + 1e-6)


def test_fp16_blocks_are_the_four_highest_resolutions() -> None:
    assert fp16_resolution(256, 4) == 32  # NVIDIA: max(2 ** (8 + 1 - 4), 8)
    assert fp16_resolution(32, 4) == 8  # never below 8
    assert fp16_resolution(256, 0) == 512  # none
    tiny = dict(channel_base=256, channel_max=4, z_dim=8, w_dim=8, mapping_layers=1)
    G = Generator(img_resolution=256, num_fp16_res=4, conv_clamp=FP16_CONV_CLAMP, **tiny)
    D = Discriminator(
        img_resolution=256, num_fp16_res=4, conv_clamp=FP16_CONV_CLAMP,
        channel_base=256, channel_max=4,
    )  # fmt: skip
    g_fp16 = {res for res in G.synthesis.block_resolutions if G.synthesis.block(res).use_fp16}
    d_fp16 = {res for res in D.block_resolutions if D.block(res).use_fp16}
    assert g_fp16 == d_fp16 == {32, 64, 128, 256}
    plain = Generator(img_resolution=256, **tiny)
    assert not any(plain.synthesis.block(res).use_fp16 for res in plain.synthesis.block_resolutions)
    # the FP16 layers change no parameter
    assert [p.shape for p in plain.parameters()] == [p.shape for p in G.parameters()]


def _layer_dtypes(modules: list[torch.nn.Module], run) -> list[torch.dtype]:
    dtypes: list[torch.dtype] = []
    hooks = [m.register_forward_hook(lambda _m, _i, y: dtypes.append(y.dtype)) for m in modules]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return dtypes


def test_fp16_blocks_compute_in_float16_and_the_rest_in_float32() -> None:
    """With 2 FP16 resolutions at 32²: G's 16² and 32² blocks and D's 32² and 16² blocks run in
    float16; the mapping network, the lower blocks, the image, D's epilogue and the logits
    stay float32."""
    torch.manual_seed(0)
    G = Generator(**LATENT, img_resolution=32, num_fp16_res=2, conv_clamp=256.0, **SMALL)
    D = Discriminator(img_resolution=32, num_fp16_res=2, conv_clamp=256.0, **SMALL)
    z = torch.randn(4, LATENT["z_dim"])
    out: dict[str, torch.Tensor] = {}

    def run() -> None:
        out["images"] = G(z, noise_mode="const")
        out["logits"] = D(out["images"])

    kinds = (SynthesisLayer, ToRGBLayer, Conv2dLayer)
    layers = {
        (net, res): [m for m in owner.block(res).modules() if isinstance(m, kinds)]
        for net, owner in (("G", G.synthesis), ("D", D))
        for res in owner.block_resolutions
    }
    for (net, res), modules in layers.items():
        dtypes = _layer_dtypes(modules, run)
        expected = torch.float16 if res >= 16 else torch.float32
        assert dtypes and set(dtypes) == {expected}, (net, res)
    assert out["images"].dtype == out["logits"].dtype == torch.float32
    features: dict[str, torch.Tensor] = {}
    G.synthesis(G.mapping(z), "const", features)
    assert {f.dtype for f in features.values()} == {torch.float32}  # what the parts' heads read


def test_fp16_networks_stay_close_to_float32_with_the_same_weights() -> None:
    torch.manual_seed(0)
    kwargs = dict(img_resolution=32, conv_clamp=256.0, **SMALL)
    G32 = Generator(**LATENT, **kwargs)
    G16 = Generator(**LATENT, num_fp16_res=4, **kwargs)
    G16.load_state_dict(G32.state_dict())
    D32, D16 = Discriminator(**kwargs), Discriminator(num_fp16_res=4, **kwargs)
    D16.load_state_dict(D32.state_dict())
    z = torch.randn(8, LATENT["z_dim"])
    with torch.no_grad():
        images32, images16 = G32(z, noise_mode="const"), G16(z, noise_mode="const")
        logits32, logits16 = D32(images32), D16(images32)
    assert not torch.equal(images16, images32)  # really computed in float16
    assert (images16 - images32).abs().max() < 0.02 * images32.abs().max()
    assert (logits16 - logits32).abs().max() < 0.02 * logits32.abs().max() + 1e-3


def test_fp16_modulated_conv_prenormalises_against_overflow() -> None:
    """NVIDIA pre-normalises the weights and styles of a demodulated conv in float16: styles
    of 1e4 would overflow float16 (max 65504) otherwise; the result equals float32's."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    weight = torch.randn(8, 16, 3, 3)
    styles = 1e4 * (torch.rand(2, 16) + 0.5)
    reference = modulated_conv2d(x, weight, styles)
    result = modulated_conv2d(x.half(), weight, styles)
    assert result.dtype == torch.float16 and torch.isfinite(result).all()
    torch.testing.assert_close(result.float(), reference, rtol=0.01, atol=0.01)
    naive = x.half() * styles.half().view(2, 16, 1, 1)  # without it: inf before the conv
    assert not torch.isfinite(torch.nn.functional.conv2d(naive, weight.half(), padding=1)).all()
