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

NVIDIA's own mixed precision (``num_fp16_res``, with ``conv_clamp``; StyleGAN2-ADA's paper256
uses 4 and 256) is built in instead of autocast: the blocks of the ``num_fp16_res`` highest
resolutions of G and D (``fp16_resolution``) cast their input to float16 and convolve in it,
with NVIDIA's pre-normalisation of the modulated weights and styles against overflow, while the
mapping network, the lower blocks, the image skip connections (the toRGB outputs are summed in
float32), the epilogue of D and every parameter stay in float32. ``conv_clamp`` clamps the
output of every convolution layer (times its gain) to [-clamp, clamp], as NVIDIA's ``bias_act``.

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

import torch
from torch import Tensor, nn

# The basic layers live in ``layers``, the FIR resampling in ``resample``; their public names
# stay importable from here.
from .layers import LRELU_GAIN as LRELU_GAIN
from .layers import LRELU_SLOPE as LRELU_SLOPE
from .layers import Conv2dLayer as Conv2dLayer
from .layers import FullyConnectedLayer as FullyConnectedLayer
from .layers import bias_act as bias_act
from .layers import normalize_2nd_moment as normalize_2nd_moment
from .resample import FIR_TAPS as FIR_TAPS
from .resample import conv2d_resample as conv2d_resample
from .resample import downsample2d as downsample2d
from .resample import fir_filter as fir_filter
from .resample import upfirdn2d as upfirdn2d
from .resample import upsample2d as upsample2d
from .resample import upsample_and_pad as upsample_and_pad
from .resample import use_fused_fir as use_fused_fir

NOISE_MODES = ("random", "const", "none")
#: NVIDIA's clamp of every convolution's output when its FP16 layers are on (paper256)
FP16_CONV_CLAMP = 256.0


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def channels_at(resolution: int, channel_base: int, channel_max: int, width: float = 1.0) -> int:
    """Feature maps at ``resolution``: int(width * min(channel_base // resolution, channel_max))."""
    channels = int(width * min(channel_base // resolution, channel_max))
    if channels < 1:
        raise ValueError(f"width {width} leaves no channels at resolution {resolution}")
    return channels


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """The lowest block resolution that runs in float16 with ``num_fp16_res`` FP16 resolutions
    (NVIDIA's networks.py: max(2 ** (log2(img_resolution) + 1 - num_fp16_res), 8)); a block at
    resolution ``res`` (G: its output, D: its input) is FP16 when ``res >= fp16_resolution``."""
    log2 = _check_resolution(img_resolution)
    return max(2 ** (log2 + 1 - num_fp16_res), 8)


def _check_resolution(img_resolution: int) -> int:
    """Return log2 of ``img_resolution``, which must be a power of two >= 8."""
    if img_resolution < 8 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    return img_resolution.bit_length() - 1


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

    In float16 (NVIDIA's FP16 layers) the weights and styles are first divided by their largest
    magnitudes (per output channel and per sample; the weights also by sqrt(fan-in)), which
    demodulation undoes exactly, so the convolution cannot overflow; the styles and weights
    are then cast to float16.
    """
    if x.dtype == torch.float16:
        if demodulate:
            fan_in = weight[0].numel()
            max_w = weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
            weight = weight * (1 / math.sqrt(fan_in) / max_w)
            styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        x = x * styles.to(x.dtype).reshape(*styles.shape, 1, 1)
    else:
        x = x * styles.reshape(*styles.shape, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up)
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


def _feature(x: Tensor) -> Tensor:
    """An activation as the ``features`` dicts hand it out: float32 from an FP16 block (what
    the parts' heads read, as in float32 training), unchanged otherwise."""
    return x.float() if x.dtype == torch.float16 else x


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | 2x-up conv), conv, toRGB; in float16 when
    ``use_fp16`` (its toRGB output joins the image in float32)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
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
        if self.use_fp16:
            x = x.to(torch.float16)
        if self.in_channels != 0:
            x = self.conv0(x, next(w_iter), noise_mode)
            if features is not None:
                features[f"b{self.resolution}.conv0"] = _feature(x)
        x = self.conv1(x, next(w_iter), noise_mode)
        if features is not None:
            features[f"b{self.resolution}.conv1"] = _feature(x)
        rgb = self.torgb(x, next(w_iter))
        if self.use_fp16:
            rgb = rgb.float()
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
        num_fp16_res: int = 0,
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
        lowest_fp16 = fp16_resolution(img_resolution, num_fp16_res)
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, self.channels[res], w_dim, res, img_channels, conv_clamp=conv_clamp,
                use_fp16=res >= lowest_fp16,
            )  # fmt: skip
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
        num_fp16_res: int = 0,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base, channel_max, width, conv_clamp,
            num_fp16_res,
        )  # fmt: skip
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
    summed with gain sqrt(0.5) each. The first block also converts from RGB. With ``use_fp16``
    it casts its input to float16 and computes in it."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        conv_clamp: float | None = None,
        *,
        resolution: int,
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution  # of the block's input; names its features
        self.use_fp16 = use_fp16
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
        # NVIDIA's blocks cast their input to their own type (FP16 or float32)
        x = x.to(torch.float16) if self.use_fp16 else _feature(x)
        if self.in_channels == 0:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        h = self.conv0(x)
        x = self.conv1(h, gain=math.sqrt(0.5))
        if features is not None:
            features[f"b{self.resolution}.conv0"] = _feature(h)
            features[f"b{self.resolution}.conv1"] = _feature(x) * math.sqrt(2.0)
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
        x = _feature(x)  # NVIDIA's epilogue runs in float32 after FP16 blocks
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
        num_fp16_res: int = 0,
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
        lowest_fp16 = fp16_resolution(img_resolution, num_fp16_res)
        for res in self.block_resolutions:
            in_channels = self.channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels,
                self.channels[res],
                self.channels[res // 2],
                img_channels,
                conv_clamp,
                resolution=res,
                use_fp16=res >= lowest_fp16,
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
