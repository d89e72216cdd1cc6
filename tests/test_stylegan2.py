"""Tests of the plain-PyTorch StyleGAN2 generator, discriminator and FIR resampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixgan.nets.resample import _transposed_crop
from mixgan.nets.stylegan2 import (
    Conv2dLayer,
    Discriminator,
    Generator,
    MinibatchStdLayer,
    SynthesisLayer,
    channels_at,
    conv2d_resample,
    count_parameters,
    downsample2d,
    fir_filter,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)

# Small networks for the fast tests: 64 channels at 4x4, fewer at higher resolutions.
SMALL = dict(channel_base=1024, channel_max=64)
LATENT = dict(z_dim=32, w_dim=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def small_g(res: int = 16, width: float = 1.0, c_dim: int = 0) -> Generator:
    return Generator(**LATENT, c_dim=c_dim, img_resolution=res, width=width, **SMALL)


def small_d(res: int = 16, width: float = 1.0, c_dim: int = 0) -> Discriminator:
    return Discriminator(c_dim=c_dim, img_resolution=res, width=width, **SMALL)


# ----------------------------------------------------------------------------------------------
# Shapes.


@pytest.mark.parametrize("res", [16, 32, 64])
@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_output_shapes(res: int, width: float) -> None:
    torch.manual_seed(0)
    G, D = small_g(res, width), small_d(res, width)
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    for n in (1, 3, 4):
        img = G(torch.randn(n, G.z_dim))
        assert img.shape == (n, 3, res, res)
        assert torch.isfinite(img).all()
        ws = G.mapping(torch.randn(n, G.z_dim))
        assert ws.shape == (n, G.num_ws, G.w_dim)
        assert G.synthesis(ws, noise_mode="none").shape == (n, 3, res, res)
        assert D(img).shape == (n, 1)


@pytest.mark.parametrize("res", [16, 32])
def test_conditional_shapes_and_label_effect(res: int) -> None:
    torch.manual_seed(0)
    G, D = small_g(res, c_dim=3), small_d(res, c_dim=3)
    for n in (1, 3, 4):
        z = torch.randn(n, G.z_dim)
        c = F.one_hot(torch.arange(n) % 3, 3).float()
        img = G(z, c, noise_mode="const")
        assert img.shape == (n, 3, res, res)
        assert D(img, c).shape == (n, 1)
        # The label changes both networks' outputs.
        c_other = c.roll(1, dims=1)
        assert not torch.allclose(G(z, c_other, noise_mode="const"), img)
        assert not torch.allclose(D(img, c_other), D(img, c))
    with pytest.raises(ValueError, match="c of shape"):
        G(torch.randn(2, G.z_dim))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Generator(img_resolution=48)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(img_resolution=4)
    G = small_g()
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(1, G.z_dim), noise_mode="bogus")
    with pytest.raises(ValueError, match="images of shape"):
        small_d()(torch.randn(1, 3, 32, 32))


# ----------------------------------------------------------------------------------------------
# Parameter counts versus the official StyleGAN2-ADA architecture.


def official_g_params(
    res: int, z_dim: int, w_dim: int, c_dim: int, base: int, cmax: int, n_map: int, rgb: int = 3
) -> int:
    """Parameters of stylegan2-ada-pytorch's training.networks.Generator, layer by layer.

    FullyConnectedLayer = weight + bias; SynthesisLayer = affine (w_dim -> in, + bias) + 3x3
    weight + scalar noise_strength + bias (noise_const is a buffer); ToRGBLayer = affine +
    1x1 weight + bias; block 4 has a const [C, 4, 4] instead of conv0.
    """
    ch = {r: min(base // r, cmax) for r in (2**i for i in range(2, int(math.log2(res)) + 1))}

    def fc(i: int, o: int) -> int:
        return i * o + o

    def layer(i: int, o: int) -> int:
        return fc(w_dim, i) + o * i * 9 + 1 + o

    def torgb(i: int) -> int:
        return fc(w_dim, i) + rgb * i + rgb

    embed = fc(c_dim, w_dim) if c_dim else 0
    mapping = embed + fc(z_dim + (w_dim if c_dim else 0), w_dim) + (n_map - 1) * fc(w_dim, w_dim)
    total = mapping + ch[4] * 16 + layer(ch[4], ch[4]) + torgb(ch[4])
    for r in list(ch)[1:]:
        total += layer(ch[r // 2], ch[r]) + layer(ch[r], ch[r]) + torgb(ch[r])
    return total


def official_d_params(res: int, c_dim: int, base: int, cmax: int, rgb: int = 3) -> int:
    """Parameters of stylegan2-ada-pytorch's training.networks.Discriminator ("resnet").

    Block r: fromrgb (1x1 + bias, top block only), conv0 3x3 (C_r -> C_r), conv1 3x3
    (C_r -> C_{r/2}), skip 1x1 without bias; epilogue: conv 3x3 (C_4 + 1 mbstd -> C_4),
    fc (16 C_4 -> C_4), out (C_4 -> 1 or cmap_dim = C_4); conditional: a MappingNetwork with
    embed (c_dim -> cmap_dim) and the default 8 FC layers of cmap_dim.
    """
    ch = {r: min(base // r, cmax) for r in (2**i for i in range(2, int(math.log2(res)) + 1))}

    def conv(i: int, o: int, k: int, bias: bool = True) -> int:
        return o * i * k * k + (o if bias else 0)

    total = conv(rgb, ch[res], 1)
    for r in list(ch)[:0:-1]:
        total += (
            conv(ch[r], ch[r], 3) + conv(ch[r], ch[r // 2], 3) + conv(ch[r], ch[r // 2], 1, False)
        )
    c4 = ch[4]
    out_dim = c4 if c_dim else 1
    total += conv(c4 + 1, c4, 3) + (16 * c4 * c4 + c4) + (c4 * out_dim + out_dim)
    if c_dim:
        total += (c_dim * c4 + c4) + 8 * (c4 * c4 + c4)
    return total


def test_parameter_counts_match_official_paper256() -> None:
    # cfg=paper256 in stylegan2-ada-pytorch: fmaps=0.5 -> channel_base = 0.5 * 32768 = 16384,
    # channel_max 512, map=8, z_dim = w_dim = 512, unconditional, 256x256 RGB.
    expected_g = official_g_params(256, 512, 512, 0, 16384, 512, 8)
    expected_d = official_d_params(256, 0, 16384, 512)
    # The formulas above, evaluated by hand: G = 2,101,248 (mapping) + 22,666,210 (synthesis),
    # D = 17,441,344 (blocks 256..8) + 6,559,745 (epilogue).
    assert (expected_g, expected_d) == (24_767_458, 24_001_089)

    G = Generator(img_resolution=256)
    D = Discriminator(img_resolution=256)
    ours_g, ours_d = count_parameters(G), count_parameters(D)
    print(f"paper256 parameters: G ours {ours_g:,} official {expected_g:,}")
    print(f"paper256 parameters: D ours {ours_d:,} official {expected_d:,}")
    assert ours_g == expected_g
    assert ours_d == expected_d


def test_parameter_counts_match_official_conditional() -> None:
    kw = dict(z_dim=64, w_dim=48, c_dim=5, img_resolution=32, channel_base=2048, channel_max=128)
    assert count_parameters(Generator(**kw, mapping_layers=3)) == official_g_params(
        32, 64, 48, 5, 2048, 128, 3
    )
    D = Discriminator(c_dim=5, img_resolution=32, channel_base=2048, channel_max=128)
    assert count_parameters(D) == official_d_params(32, 5, 2048, 128)


def layer_channels(G: Generator, D: Discriminator, res: int) -> set[int]:
    """Channel counts of every layer working at ``res`` (must all agree)."""
    block = G.synthesis.block(res)
    counts = {*block.conv1.weight.shape[:2], block.torgb.weight.shape[1]}
    if res > 4:
        counts |= {block.conv0.weight.shape[0], *D.block(res).conv0.weight.shape[:2]}
        counts.add(D.block(res).conv1.weight.shape[1])
        counts.add(D.block(res).skip.weight.shape[1])
    else:
        counts |= {block.const.shape[0], *D.b4.conv.weight.shape[:1], D.b4.fc.weight.shape[0]}
    return counts


def test_width_scales_every_layer() -> None:
    nets = {w: (small_g(64, w), small_d(64, w)) for w in (0.5, 1.0, 2.0)}
    for res in (4, 8, 16, 32, 64):
        (half,) = layer_channels(*nets[0.5], res)
        (base,) = layer_channels(*nets[1.0], res)
        (double,) = layer_channels(*nets[2.0], res)
        assert base == channels_at(res, **SMALL)
        assert double == 2 * base
        assert 2 * half == base
    # Cross-resolution layers connect the right widths: conv0 of block r reads C_{r/2}.
    G, D = nets[2.0]
    assert G.synthesis.b8.conv0.weight.shape[1] == 2 * channels_at(4, **SMALL)
    assert D.b8.conv1.weight.shape[0] == 2 * channels_at(4, **SMALL)


# ----------------------------------------------------------------------------------------------
# Modulation / demodulation.


def test_demodulation_gives_unit_variance() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 64, 40, 40)
    weight = torch.randn(32, 64, 3, 3)
    styles = torch.randn(4, 64).exp()  # random positive styles spanning an order of magnitude
    out = modulated_conv2d(x, weight, styles)[:, :, 1:-1, 1:-1]  # drop zero-padded borders
    std = out.std(dim=(2, 3))  # per sample and output channel
    assert std.mean().item() == pytest.approx(1.0, abs=0.03)
    assert (std - 1).abs().max().item() < 0.15
    # Without demodulation the scale follows the weights and styles.
    raw = modulated_conv2d(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
    assert raw.std().item() > 10


def test_modulated_conv_equals_per_sample_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 10, 10)
    weight = torch.randn(5, 8, 3, 3)
    styles = torch.randn(3, 8)
    out = modulated_conv2d(x, weight, styles)
    for n in range(3):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        w = w / w.square().sum(dim=(1, 2, 3), keepdim=True).sqrt()
        torch.testing.assert_close(out[n : n + 1], F.conv2d(x[n : n + 1], w, padding=1))


# ----------------------------------------------------------------------------------------------
# Mapping, truncation, noise, determinism.


def test_truncation_psi_zero_collapses_to_w_avg() -> None:
    torch.manual_seed(0)
    G = small_g().eval()
    G.mapping(torch.randn(64, G.z_dim), update_emas=True)  # make w_avg non-trivial
    z = torch.randn(4, G.z_dim)
    img = G(z, truncation_psi=0.0, noise_mode="const")
    for i in range(1, 4):
        torch.testing.assert_close(img[i], img[0])
    assert not torch.allclose(G(z, noise_mode="const")[1], G(z, noise_mode="const")[0])
    # A cutoff truncates only the first ws.
    ws = G.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(ws[:, :2], G.mapping.w_avg.expand(4, 2, -1))
    torch.testing.assert_close(ws[:, 2:], G.mapping(z)[:, 2:])
    # psi interpolates linearly between w_avg and w.
    half = G.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(half, 0.5 * (G.mapping(z) + G.mapping.w_avg))


def test_w_avg_updates_only_with_update_emas() -> None:
    torch.manual_seed(0)
    G = small_g().train()
    z = torch.randn(8, G.z_dim)
    G(z)
    G.mapping(z)
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    w = G.mapping(z)[:, 0]
    G(z, update_emas=True)
    torch.testing.assert_close(G.mapping.w_avg, (1 - 0.995) * w.mean(dim=0))


def test_determinism_and_noise_modes() -> None:
    def build_and_run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(123)
        G, D = small_g(), small_d()
        for block in G.synthesis.children():
            block.conv1.noise_strength.data.fill_(0.5)
        img = G(torch.randn(3, G.z_dim))
        return img, D(img)

    (img1, logit1), (img2, logit2) = build_and_run(), build_and_run()
    torch.testing.assert_close(img1, img2, rtol=0, atol=0)
    torch.testing.assert_close(logit1, logit2, rtol=0, atol=0)

    torch.manual_seed(0)
    G = small_g()
    for block in G.synthesis.children():
        block.conv1.noise_strength.data.fill_(0.5)
    z = torch.randn(2, G.z_dim)
    torch.testing.assert_close(G(z, noise_mode="const"), G(z, noise_mode="const"))
    assert not torch.allclose(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.allclose(G(z, noise_mode="none"), G(z, noise_mode="const"))


def test_generator_supports_path_length_double_backward() -> None:
    torch.manual_seed(0)
    G = small_g()
    ws = G.mapping(torch.randn(2, G.z_dim))
    img = G.synthesis(ws)
    (grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    grad.square().sum().backward()
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert G.synthesis.b16.conv0.weight.grad.abs().sum() > 0


def test_bf16_autocast_keeps_activations_in_bf16_and_close_to_float32() -> None:
    # A float32 bias or demodulation factor would silently promote every later activation.
    torch.manual_seed(0)
    G, D = small_g(16).eval(), small_d(16).eval()
    ws = G.mapping(torch.randn(4, G.z_dim)).detach()
    layers = [
        layer
        for net in (G.synthesis, D)
        for layer in net.modules()
        if isinstance(layer, (SynthesisLayer, Conv2dLayer))
    ]
    dtypes: list[torch.dtype] = []
    with torch.no_grad():
        images = G.synthesis(ws, noise_mode="const")
        logits = D(images)
        hooks = [m.register_forward_hook(lambda _m, _i, y: dtypes.append(y.dtype)) for m in layers]
        with torch.autocast("cpu", torch.bfloat16):
            images_bf16 = G.synthesis(ws, noise_mode="const")
            logits_bf16 = D(images)
    for hook in hooks:
        hook.remove()
    assert len(dtypes) == len(layers) and set(dtypes) == {torch.bfloat16}
    assert (images_bf16.float() - images).abs().mean() < 0.05 * images.std()
    assert (logits_bf16.float() - logits).abs().max() < 0.05 * logits.abs().max() + 0.05


# ----------------------------------------------------------------------------------------------
# Discriminator.


def test_r1_gradient_is_finite_and_nonzero() -> None:
    torch.manual_seed(0)
    D = small_d(32)
    img = torch.randn(4, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(D(img).sum(), img, create_graph=True)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    grad.square().sum().backward()  # R1 penalty reaches D's weights
    assert torch.isfinite(D.b32.conv0.weight.grad).all()
    assert D.b32.conv0.weight.grad.abs().sum() > 0


def test_features_are_the_layers_activations_and_leave_the_outputs_unchanged() -> None:
    torch.manual_seed(0)
    G, D = small_g(16), small_d(16)
    ws = torch.randn(3, G.num_ws, LATENT["w_dim"])
    g_features: dict[str, torch.Tensor] = {}
    images = G.synthesis(ws, "const", g_features)
    assert torch.equal(images, G.synthesis(ws, "const"))
    assert list(g_features) == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    b16 = G.synthesis.b16
    x = b16.conv0(g_features["b8.conv1"], ws[:, 3], "const")
    torch.testing.assert_close(g_features["b16.conv0"], x)
    torch.testing.assert_close(g_features["b16.conv1"], b16.conv1(x, ws[:, 4], "const"))
    d_features: dict[str, torch.Tensor] = {}
    logits = D(images, None, d_features)
    assert torch.equal(logits, D(images))
    assert set(d_features) == {"b16.conv0", "b16.conv1", "b8.conv0", "b8.conv1", "b4.fc"}
    h = D.b16.conv0(D.b16.fromrgb(images))
    torch.testing.assert_close(d_features["b16.conv0"], h)
    torch.testing.assert_close(d_features["b16.conv1"], D.b16.conv1(h))  # without the sqrt(.5)
    assert d_features["b8.conv1"].shape == (3, 64, 4, 4)
    torch.testing.assert_close(D.b4.out(d_features["b4.fc"]), logits)  # D = out ∘ d1


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_discriminator_any_batch_size(n: int) -> None:
    torch.manual_seed(0)
    D = small_d(16)
    out = D(torch.randn(n, 3, 16, 16))
    assert out.shape == (n, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize(("n", "group"), [(1, 1), (3, 3), (5, 1), (6, 3), (8, 4), (12, 4)])
def test_minibatch_std_groups(n: int, group: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(n, 6, 4, 4)
    y = MinibatchStdLayer(group_size=4, num_channels=2)(x)
    assert y.shape == (n, 8, 4, 4)
    torch.testing.assert_close(y[:, :6], x)
    # Reference: group g holds samples i with i % (n // group) == g; each of the two stat
    # channels averages the within-group stddev of its 3 feature channels over all pixels.
    n_groups = n // group
    for i in range(n):
        members = x[i % n_groups :: n_groups]
        assert len(members) == group
        std = (members.var(dim=0, unbiased=False) + 1e-8).sqrt()
        for f in range(2):
            expected = std[3 * f : 3 * f + 3].mean()
            torch.testing.assert_close(y[i, 6 + f], expected.expand(4, 4))


# ----------------------------------------------------------------------------------------------
# FIR resampling.


def test_filter_is_normalised() -> None:
    f = fir_filter()
    torch.testing.assert_close(f, torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8)
    assert torch.outer(f, f).sum().item() == pytest.approx(1.0)


def test_upsample_preserves_constants() -> None:
    x = torch.full((2, 3, 8, 8), 0.7)
    y = upsample2d(x, fir_filter())
    assert y.shape == (2, 3, 16, 16)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full((2, 3, 12, 12), 0.7))


def test_downsample_matches_average_pooling_on_smooth_input() -> None:
    i = torch.arange(32.0)
    smooth = torch.sin(i / 5)[:, None] * torch.cos(i / 7)[None, :]
    x = smooth.expand(2, 3, 32, 32)
    y = downsample2d(x, fir_filter())
    assert y.shape == (2, 3, 16, 16)
    pooled = F.avg_pool2d(x, 2)
    assert (y - pooled)[:, :, 1:-1, 1:-1].abs().max() < 0.02
    torch.testing.assert_close(
        downsample2d(torch.ones(1, 1, 8, 8), fir_filter())[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2)
    )


def naive_upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: tuple[int, int]
) -> torch.Tensor:
    """Brute-force reference: explicit zero insertion, 2-D true convolution, subsampling."""
    n, c, h, w = x.shape
    big = x.new_zeros(n, c, h * up, w * up)
    big[:, :, ::up, ::up] = x
    big = F.pad(big, (*pad, *pad))
    kernel = torch.outer(f, f).flip(0, 1) * up * up
    out = F.conv2d(big.reshape(n * c, 1, *big.shape[2:]), kernel[None, None])
    return out.reshape(n, c, *out.shape[2:])[:, :, ::down, ::down]


@pytest.mark.parametrize(
    ("up", "down", "pad", "transposed"),
    [
        (1, 1, (2, 2), False),
        (2, 1, (1, 1), True),  # a transposed convolution with output_padding 1
        (2, 1, (2, 1), True),  # upsample2d's padding
        (2, 1, (-1, 3), False),  # cropping more than the filter reaches: zero insertion
        (1, 2, (1, 1), False),
        (2, 2, (3, 3), False),
    ],
)
def test_upfirdn2d_matches_naive_reference(
    up: int, down: int, pad: tuple[int, int], transposed: bool
) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9)  # not square, to check both axes
    f = torch.tensor([1.0, 2.0, 4.0, 1.0])  # asymmetric, to check the convolution orientation
    crop = _transposed_crop(f.numel(), up, (*pad, *pad)) if up > 1 and down == 1 else None
    assert (crop is not None) == transposed
    ours = upfirdn2d(x, f, up=up, down=down, padding=pad, gain=up * up)
    torch.testing.assert_close(ours, naive_upfirdn2d(x, f, up, down, pad))


@pytest.mark.parametrize(
    ("up", "down", "pad"), [(1, 2, (1, 1)), (2, 1, (2, 1)), (1, 1, (2, 1)), (2, 1, (-1, 3))]
)
def test_upfirdn2d_gradients_of_first_and_second_order_match_finite_differences(
    up: int, down: int, pad: tuple[int, int]
) -> None:
    # The backward pass is the hand-written adjoint; a non-square input checks both axes.
    torch.manual_seed(0)
    f = torch.tensor([1.0, 2.0, 4.0, 1.0], dtype=torch.float64)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)

    def resample(x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, f, up=up, down=down, padding=pad, gain=up * up)

    assert torch.autograd.gradcheck(resample, (x,))
    assert torch.autograd.gradgradcheck(resample, (x,))


def _convolutions_in_double_backward(channels: int, up: int, down: int) -> int:
    x = torch.randn(2, channels, 16, 16, requires_grad=True)
    w = torch.randn(channels, channels, 3, 3, requires_grad=True)
    y = conv2d_resample(x, w, fir_filter(), up=up, down=down)
    (grad,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with torch.profiler.profile() as prof:
        grad.square().sum().backward()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")


@pytest.mark.parametrize(("up", "down"), [(2, 1), (1, 2)])
def test_r1_and_path_length_double_backward_does_not_loop_over_channels(up: int, down: int) -> None:
    # PyTorch's double backward of a grouped convolution runs one convolution per channel
    # (10 s per regularisation step at 256² on an H200); the FIR adjoint keeps it constant.
    assert _convolutions_in_double_backward(4, up, down) == _convolutions_in_double_backward(
        64, up, down
    )


def test_conv2d_resample_matches_official_reference_paths() -> None:
    # The official generic path (conv2d_resample's fallback) defines the semantics:
    # up:   upfirdn2d(up=2, pad (3, 2), gain 4) then a convolution with the unflipped weight,
    #       i.e. a correlation with the flipped weight (SynthesisLayer uses flip_weight=False);
    # down: pad 2, 3x3 correlation, then upfirdn2d(down=2) without padding.
    torch.manual_seed(0)
    f = fir_filter()
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(5, 4, 3, 3)
    up_ref = F.conv2d(upfirdn2d(x, f, up=2, padding=(3, 2), gain=4), w.flip(2, 3))
    torch.testing.assert_close(conv2d_resample(x, w, f, up=2), up_ref)
    down_ref = upfirdn2d(F.conv2d(x, w, padding=2), f, down=2)
    torch.testing.assert_close(conv2d_resample(x, w, f, down=2), down_ref)
    w1 = torch.randn(5, 4, 1, 1)
    down1_ref = upfirdn2d(F.conv2d(x, w1), f, down=2, padding=(1, 1))
    torch.testing.assert_close(conv2d_resample(x, w1, f, down=2), down1_ref)
