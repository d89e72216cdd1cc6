"""StyleGAN2 generator and discriminator (Karras et al., 2020) in plain PyTorch.

The architecture follows config F as implemented in NVlabs/stylegan2-ada-pytorch: a mapping
network with equalized learning rate and a 0.01 learning-rate multiplier, a "skip" synthesis
network with weight (de)modulation, per-pixel noise and [1, 3, 3, 1] FIR resampling, and a
"resnet" discriminator with a minibatch-stddev epilogue and projection conditioning. Only
standard PyTorch ops are needed (no custom CUDA kernels), so it runs on CPU and supports
higher-order gradients (R1, path-length regularisation); on a GPU the FIR resampling can run
as one fused Triton kernel instead (``use_fused_fir``, ``fused_fir``).

Under ``torch.autocast`` the convolutions run in the autocast type while the demodulation
coefficients and the minibatch standard deviation are computed in float32 and every bias is
cast to the activations' type, so activations stay in the low-precision type throughout.

Parameter counts equal the official ones, and the state-dict keys are the official names
(``mapping.fc0.weight``, ``synthesis.b4.conv1.affine.bias``, ``b4.fc.weight``, ...) minus the
constant resampling filters, which are non-persistent buffers here. ``width`` multiplies every
layer's channel count.

The synthesis network and D can hand out their intermediate activations (``features``, a dict
they fill, keyed by the name of the layer that produced each), which regularizers such as
MixDL's distance losses and patch-level discrimination read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import fused_fir

NOISE_MODES = ("random", "const", "none")
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
Padding4 = tuple[int, int, int, int]  # (left, right, top, bottom), as F.pad takes them


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def channels_at(resolution: int, channel_base: int, channel_max: int, width: float = 1.0) -> int:
    """Feature maps at ``resolution``: int(width * min(channel_base // resolution, channel_max))."""
    channels = int(width * min(channel_base // resolution, channel_max))
    if channels < 1:
        raise ValueError(f"width {width} leaves no channels at resolution {resolution}")
    return channels


def _check_resolution(img_resolution: int) -> int:
    """Return log2 of ``img_resolution``, which must be a power of two >= 8."""
    if img_resolution < 8 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    return img_resolution.bit_length() - 1


# ----------------------------------------------------------------------------------------------
# Resampling with a separable FIR filter (pure-PyTorch upfirdn2d).


def fir_filter(taps: Sequence[float] = FIR_TAPS) -> Tensor:
    """1-D low-pass filter, normalised so that its (separable) 2-D version has unit DC gain."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    return f / f.sum()


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter, then keep every
    ``down``-th pixel; applied to each channel of an NCHW tensor.

    ``f`` is a 1-D filter applied along both axes, ``padding`` gives the (before, after) zero
    padding of both axes of the upsampled image (negative values crop), and ``gain`` scales the
    output of the 2-D filter. Its gradient is again an ``upfirdn2d`` (see ``_FIRResample``), so
    it can be differentiated any number of times.
    """
    pad = (padding[0], padding[1], padding[0], padding[1])
    return _FIRResample.apply(x, f, up, down, pad, gain)


def upsample_and_pad(x: Tensor, up: int, pad: Padding4) -> Tensor:
    """Insert ``up - 1`` zeros after every pixel along both axes, then pad (negative crops)."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    return F.pad(x, pad)


_fused_fir = {"enabled": False}


def use_fused_fir(enabled: bool) -> None:
    """Run the FIR resampling through the fused Triton kernel (``fused_fir``) wherever it can
    run (CUDA tensors, Triton importable) and the code is not being compiled."""
    _fused_fir["enabled"] = enabled


def _fir_resample(x: Tensor, f: Tensor, up: int, down: int, pad: Padding4, gain: float) -> Tensor:
    """``upfirdn2d`` with (left, right, top, bottom) padding: the fused kernel if enabled, else
    one grouped convolution with the 2-D filter, a transposed one of stride ``up`` where the
    padding allows (no zero-filled intermediate), otherwise a strided one after explicit zero
    insertion and padding."""
    if _fused_fir["enabled"] and fused_fir.available(x) and not torch.compiler.is_compiling():
        return fused_fir.upfirdn2d(x, f, up, down, pad, gain)
    c, k = x.shape[1], f.numel()
    kernel = (torch.outer(f, f) * gain).to(x.dtype)  # the 2-D filter of a true convolution
    if up > 1 and down == 1:
        crop = _transposed_crop(k, up, pad)
        if crop is not None:
            padding, output_padding = crop
            weight = kernel.expand(c, 1, k, k)
            return F.conv_transpose2d(
                x, weight, stride=up, padding=padding, output_padding=output_padding, groups=c
            )
    x = upsample_and_pad(x, up, pad)
    return F.conv2d(x, kernel.flip(0, 1).expand(c, 1, k, k), stride=down, groups=c)


def _transposed_crop(
    k: int, up: int, pad: Padding4
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``padding`` and ``output_padding`` of the transposed convolution of stride ``up`` that
    equals upsampling with a k-tap filter and ``pad``, or None where none does.

    The transposed convolution's full output starts ``k - 1 - before`` samples before the
    wanted output and ends ``k - up - after`` samples after it; ``padding`` crops the same
    number at both ends and ``output_padding`` gives back 0 to ``up - 1`` at the end.
    """
    left, right, top, bottom = pad
    crops = []
    for before, after in ((top, bottom), (left, right)):
        start, end = k - 1 - before, k - up - after
        if start < 0 or not 0 <= start - end < up:
            return None
        crops.append((start, start - end))
    (pad_h, extra_h), (pad_w, extra_w) = crops
    return (pad_h, pad_w), (extra_h, extra_w)


class _FIRResample(torch.autograd.Function):
    """FIR resampling whose backward pass is its adjoint, another FIR resampling (the flipped
    filter, ``up`` and ``down`` swapped, the padding mirrored).

    PyTorch's own double backward of a grouped convolution computes the (unused) filter
    gradient one channel at a time, each a convolution with an image-sized kernel: on an H200
    that made every R1 and path-length step of StyleGAN2 at 256² take about 10 s.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, f: Tensor, up: int, down: int, pad: Padding4, gain: float
    ) -> Tensor:
        y = _fir_resample(x, f, up, down, pad, gain)
        ctx.save_for_backward(f)
        ctx.setup = (x.shape[2], x.shape[3], y.shape[2], y.shape[3], up, down, pad, gain)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None, None]:
        (f,) = ctx.saved_tensors
        h, w, out_h, out_w, up, down, (left, right, top, bottom), gain = ctx.setup
        k = f.numel()
        adjoint_pad = (
            k - 1 - left,
            w * up - out_w * down + left,
            k - 1 - top,
            h * up - out_h * down + top,
        )
        grad_x = _FIRResample.apply(grad, f.flip(0), down, up, adjoint_pad, gain)
        return grad_x, None, None, None, None, None


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """Upsample 2x with the FIR filter ``f`` (output size exactly twice the input size)."""
    k = f.numel()
    return upfirdn2d(x, f, up=2, padding=((k + 1) // 2, (k - 2) // 2), gain=4.0)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """Low-pass filter with ``f`` and downsample 2x (output size exactly half the input size)."""
    k = f.numel()
    return upfirdn2d(x, f, down=2, padding=((k - 1) // 2, (k - 2) // 2))


def conv2d_resample(
    x: Tensor, weight: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1
) -> Tensor:
    """'Same'-size convolution with an [out, in, k, k] ``weight`` (k odd), either on the
    FIR-upsampled input (``up=2``) or followed by FIR downsampling (``down=2``).

    Upsampling uses a stride-2 transposed convolution (zero insertion + convolution) followed by
    the FIR filter; downsampling filters first and then uses a stride-2 convolution.
    """
    k = weight.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, weight, padding=k // 2)
    if f is None or (up, down) not in ((2, 1), (1, 2)):
        raise ValueError("resampling needs a FIR filter and exactly one of up=2 or down=2")
    t = f.numel()
    if up == 2:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        pad = (k // 2 + (t + 1) // 2 - (k - 1), k // 2 + (t - 2) // 2 - (k - 2))
        return upfirdn2d(x, f, padding=pad, gain=4.0)
    pad = (k // 2 + (t - 1) // 2, k // 2 + (t - 2) // 2)
    if k == 1:  # a 1x1 conv commutes with filtering: downsample first, it is cheaper
        return F.conv2d(upfirdn2d(x, f, down=2, padding=pad), weight)
    return F.conv2d(upfirdn2d(x, f, padding=pad), weight, stride=2)


# ----------------------------------------------------------------------------------------------
# Basic layers with equalized learning rate.


def bias_act(
    x: Tensor,
    bias: Tensor | None = None,
    activation: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> Tensor:
    """Add a per-channel bias, apply 'linear' or 'lrelu' (slope 0.2, gain sqrt(2)), multiply
    by ``gain`` and clamp to [-clamp, clamp]."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate and a learning-rate multiplier."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain)
        bias = None if self.bias is None else self.bias * self.bias_gain
        return bias_act(x, bias, self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional FIR downsampling, bias, activation
    and clamping."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, down=self.down)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, self.activation, gain=gain, clamp=clamp)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale ``x`` to unit mean square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------------
# Generator.


class MappingNetwork(nn.Module):
    """z (and optional class label c) -> w, broadcast to ``num_ws`` copies; tracks ``w_avg``."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            self.add_module(f"fc{idx}", layer)
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """Return ws of shape [N, num_ws, w_dim] (or [N, w_dim] when ``num_ws`` is None).

        Truncation moves the first ``truncation_cutoff`` ws (all if None) towards ``w_avg``;
        ``update_emas`` updates ``w_avg`` with the batch mean of the untruncated w.
        """
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"expected z of shape [N, {self.z_dim}]")
            parts.append(normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"expected c of shape [N, {self.c_dim}]")
            parts.append(normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x

        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs a tracked w_avg")
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            truncated = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
            ws = torch.cat([truncated, ws[:, cutoff:]], dim=1)
        return ws


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: Tensor | None = None,
) -> Tensor:
    """StyleGAN2 modulated convolution of ``x`` [N, I, H, W] with ``weight`` [O, I, k, k].

    Scaling the input channels by ``styles`` [N, I] before a shared convolution equals
    convolving with per-sample weights ``weight * styles``; demodulation then rescales each
    output channel by the inverse L2 norm of its per-sample weights, so unit-variance inputs
    give unit-variance outputs.
    """
    x = x * styles.reshape(*styles.shape, 1, 1)
    x = conv2d_resample(x, weight, resample_filter, up=up)
    if demodulate:
        # sum_{i,kh,kw} (weight[o, i] * styles[n, i])^2 for every (n, o), in float32
        with torch.autocast(x.device.type, enabled=False):
            sq_norms = styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t()
        x = x * (sq_norms + 1e-8).rsqrt().to(x.dtype).reshape(*sq_norms.shape, 1, 1)
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x), noise input, bias and leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(
            x, self.weight, styles, up=self.up, resample_filter=self.resample_filter
        )
        if noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            x = x + torch.randn(shape, device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return bias_act(x, self.bias, "lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | 2x-up conv), conv, toRGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        noise_mode: str,
        features: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``ws`` holds ``num_conv + 1`` latents: one per conv, then one for toRGB. A
        ``features`` dict receives the convs' activations as ``b<res>.conv0``/``.conv1``."""
        w_iter = iter(ws.unbind(dim=1))
        if x is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, next(w_iter), noise_mode)
            if features is not None:
                features[f"b{self.resolution}.conv0"] = x
        x = self.conv1(x, next(w_iter), noise_mode)
        if features is not None:
            features[f"b{self.resolution}.conv1"] = x
        rgb = self.torgb(x, next(w_iter))
        img = rgb if img is None else upsample2d(img, self.resample_filter) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, img_channels, img_resolution, img_resolution]."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 16384,
        channel_max: int = 512,
        width: float = 1.0,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = _check_resolution(img_resolution)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.channels = {
            res: channels_at(res, channel_base, channel_max, width)
            for res in self.block_resolutions
        }
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, self.channels[res], w_dim, res, img_channels, conv_clamp=conv_clamp
            )
            self.add_module(f"b{res}", block)
        # Each block's toRGB shares its w with the first conv of the next block.
        self.num_ws = sum(self.block(res).num_conv for res in self.block_resolutions) + 1

    def block(self, res: int) -> SynthesisBlock:
        """The block working at resolution ``res``."""
        return getattr(self, f"b{res}")

    def forward(
        self, ws: Tensor, noise_mode: str = "random", features: dict[str, Tensor] | None = None
    ) -> Tensor:
        """Images from ``ws``; a ``features`` dict receives every synthesis layer's output
        (after noise, bias and activation), keyed ``b<res>.conv0``/``b<res>.conv1``, in the
        order they were computed."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"expected ws of shape [N, {self.num_ws}, {self.w_dim}]")
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = self.block(res)
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + 1), noise_mode, features)
            w_idx += block.num_conv
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network followed by the skip synthesis network."""

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        c_dim: int = 0,
        img_resolution: int = 256,
        img_channels: int = 3,
        channel_base: int = 16384,
        channel_max: int = 512,
        width: float = 1.0,
        mapping_layers: int = 8,
        mapping_lr_mult: float = 0.01,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base, channel_max, width, conv_clamp
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim, c_dim, w_dim, self.num_ws, mapping_layers, lr_multiplier=mapping_lr_mult
        )

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
    ) -> Tensor:
        """Images [N, img_channels, R, R], roughly in [-1, 1], from latents z [N, z_dim]."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)


# ----------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples 2x) plus a 1x1 downsampling skip,
    summed with gain sqrt(0.5) each. The first block also converts from RGB."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        conv_clamp: float | None = None,
        *,
        resolution: int,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution  # of the block's input; names its features
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp
        )
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor, features: dict[str, Tensor] | None = None) -> Tensor:
        """A ``features`` dict receives the residual branch's activations as ``b<res>.conv0``
        and ``b<res>.conv1`` (the latter without the branch's sqrt(0.5) gain, i.e. the plain
        activation of the layer, as a ResBlock's ``conv2`` of rosinality's StyleGAN2 gives it)."""
        if self.in_channels == 0:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        h = self.conv0(x)
        x = self.conv1(h, gain=math.sqrt(0.5))
        if features is not None:
            features[f"b{self.resolution}.conv0"] = h
            features[f"b{self.resolution}.conv1"] = x * math.sqrt(2.0)
        return x + y


class MinibatchStdLayer(nn.Module):
    """Append the average (over channels and pixels) stddev of features within sample groups.

    The group size is the largest divisor of the batch size that does not exceed
    ``group_size`` (None = whole batch), so any batch size works; sample i belongs to group
    ``i % (N // G)`` as in the official code.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        while n % g:
            g -= 1
        f = self.num_channels
        y = x.float().reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance within each group
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [N // G, F]
        y = y.to(x.dtype).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, 3x3 conv, FC, output FC (projection if conditional)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int = 4,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
            if mbstd_num_channels > 0
            else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            3,
            activation="lrelu",
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(
        self, x: Tensor, cmap: Tensor | None, features: dict[str, Tensor] | None = None
    ) -> Tensor:
        """A ``features`` dict receives ``b4.fc``, the input of the output layer ``out``."""
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.fc(self.conv(x).flatten(1))
        if features is not None:
            features["b4.fc"] = x
        x = self.out(x)
        if cmap is not None:
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator; ``forward(img, c)`` returns logits of shape [N, 1]."""

    def __init__(
        self,
        c_dim: int = 0,
        img_resolution: int = 256,
        img_channels: int = 3,
        channel_base: int = 16384,
        channel_max: int = 512,
        width: float = 1.0,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = _check_resolution(img_resolution)
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        self.channels = {
            res: channels_at(res, channel_base, channel_max, width)
            for res in [*self.block_resolutions, 4]
        }
        for res in self.block_resolutions:
            in_channels = self.channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels,
                self.channels[res],
                self.channels[res // 2],
                img_channels,
                conv_clamp,
                resolution=res,
            )
            self.add_module(f"b{res}", block)
        cmap_dim = self.channels[4] if c_dim > 0 else 0
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, num_ws=None, w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(
            self.channels[4], cmap_dim, 4, mbstd_group_size, mbstd_num_channels, conv_clamp
        )

    def block(self, res: int) -> DiscriminatorBlock:
        """The block whose input has resolution ``res``."""
        return getattr(self, f"b{res}")

    def forward(
        self, img: Tensor, c: Tensor | None = None, features: dict[str, Tensor] | None = None
    ) -> Tensor:
        """Logits [N, 1]; a ``features`` dict receives every block's residual-branch
        activations (``b<res>.conv0`` at the block's input resolution, ``b<res>.conv1`` at
        half of it) and ``b4.fc``, the penultimate features (D = out ∘ everything before it)."""
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"expected images of shape [N, {', '.join(map(str, expected))}]")
        x = img
        for res in self.block_resolutions:
            x = self.block(res)(x, features)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap, features)
