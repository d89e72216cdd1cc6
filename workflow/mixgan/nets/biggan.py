"""BigGAN (Brock et al., ICLR 2019): class-conditional generator and projection discriminator.

The topology follows BigGAN-PyTorch's ``BigGAN.py`` (the authors' PyTorch port) for 32², 64²,
128² and 256²: channel multipliers per resolution (``G_arch``/``D_arch``), a hierarchical
latent split into one chunk per block plus one for the 4x4 input, a shared class embedding
concatenated with each chunk to drive the conditional BatchNorm of every residual up-block
(gain 1 + W_g y, bias W_b y; without ``hier``, z feeds only the 4x4 input and the BatchNorms
see the class embedding alone), SAGAN self-attention after the block of each ``attention``
resolution, spectral norm on every convolution and linear layer of G and D and on D's class
embedding (one power iteration, eps 1e-6; in eval mode one more iteration from the stored
vector, not stored, as their ``layers.SN``; G's shared embedding stays a plain
``nn.Embedding``, as theirs), D's wide
pre-activation residual down-blocks, ReLU and sum pooling, and the projection head
``linear(h) + <embed(y), h>``. Weights start orthogonal (their ``G_init``/``D_init ortho``).
At 128², ch 96, z 120, shared 128, 1000 classes, G has 70,433,988 parameters and D
87,982,370, the counts google/compare_gan's ``resnet_biggan_test.py`` asserts for BigGAN at
128². One difference: BigGAN-PyTorch's 32² D labels all four blocks 16², though they output
16², 8², 8², 8², so there attention at 16 follows all four and attention at 8 none; here
attention follows the blocks by the resolution they output (16: the first; 8: the other three).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

#: resolution -> (G's block input-channel multipliers, output multipliers); ch x these.
G_CHANNELS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    32: ((4, 4, 4), (4, 4, 4)),
    64: ((16, 16, 8, 4), (16, 8, 4, 2)),
    128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
    256: ((16, 16, 8, 8, 4, 2), (16, 8, 8, 4, 2, 1)),
}

#: resolution -> D's blocks as (output-channel multiplier, downsamples); the input is RGB.
D_BLOCKS: dict[int, tuple[tuple[int, bool], ...]] = {
    32: ((4, True), (4, True), (4, False), (4, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
    256: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
}

BOTTOM_WIDTH = 4
SN_EPS = 1e-6
BN_EPS = 1e-5


def _check_resolution(resolution: int) -> None:
    if resolution not in G_CHANNELS:
        raise ValueError(
            f"BigGAN builds resolutions {', '.join(map(str, G_CHANNELS))}, not {resolution}"
        )


def orthogonal(layer: nn.Module) -> nn.Module:
    """``layer`` with an orthogonal initial weight (BigGAN-PyTorch's ``init: ortho``)."""
    nn.init.orthogonal_(layer.weight)
    return layer


class SpectralNorm(_SpectralNorm):
    """torch's spectral norm (one power iteration per training forward, updating u and v),
    except in eval mode: there BigGAN-PyTorch's ``layers.SN`` still runs its power iteration
    (``power_iteration(W, u, update=self.training)``) from the stored u without storing the
    result, v = W^T u / |W^T u|, u' = W v / |W v|, sigma = u'^T W v. An EMA generator, whose
    u averages G's (``mixgan.train.biggan.ema_update``), so divides by its own weights'
    sigma, as theirs."""

    def forward(self, weight: Tensor) -> Tensor:
        if self.training or weight.ndim == 1:
            return super().forward(weight)
        matrix = self._reshape_weight_to_matrix(weight)
        with torch.no_grad():
            v = F.normalize(torch.mv(matrix.H, self._u), dim=0, eps=self.eps)
            u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps)
        return weight / torch.vdot(u, torch.mv(matrix, v))


def spectrally_normalised(layer: nn.Module) -> nn.Module:
    """``layer``, orthogonally initialised, under spectral norm (one power iteration per
    training forward, eps 1e-6); the power iteration starts from the initial weight."""
    weight = orthogonal(layer).weight
    parametrize.register_parametrization(layer, "weight", SpectralNorm(weight, 1, 0, SN_EPS))
    return layer


def sn_conv(in_channels: int, out_channels: int, kernel: int = 3, bias: bool = True) -> nn.Module:
    """A spectrally normalised convolution, 'same' padding."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)
    return spectrally_normalised(conv)


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    return spectrally_normalised(nn.Linear(in_features, out_features, bias=bias))


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then gain 1 + W_g y and bias W_b y from the
    conditioning vector y (spectrally normalised linear maps without bias)."""

    def __init__(self, channels: int, condition_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS, affine=False)
        self.gain = sn_linear(condition_dim, channels, bias=False)
        self.bias = sn_linear(condition_dim, channels, bias=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        gain = 1 + self.gain(y)[:, :, None, None]
        return self.bn(x) * gain + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with an upsampled 1x1-conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(in_channels, condition_dim)
        self.conv1 = sn_conv(in_channels, out_channels)
        self.bn2 = ConditionalBatchNorm(out_channels, condition_dim)
        self.conv2 = sn_conv(out_channels, out_channels)
        self.shortcut = sn_conv(in_channels, out_channels, kernel=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Attention(nn.Module):
    """SAGAN self-attention: keys and values 2x2 max-pooled, output scaled by a learnt
    gamma that starts at 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.theta = sn_conv(channels, channels // 8, kernel=1, bias=False)
        self.phi = sn_conv(channels, channels // 8, kernel=1, bias=False)
        self.g = sn_conv(channels, channels // 2, kernel=1, bias=False)
        self.o = sn_conv(channels // 2, channels, kernel=1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        theta = self.theta(x).flatten(2)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)
        g = F.max_pool2d(self.g(x), 2).flatten(2)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [B, HW, HW/4]
        o = (g @ beta.transpose(1, 2)).view(batch, channels // 2, height, width)
        return x + self.gamma * self.o(o)


class Generator(nn.Module):
    """G(z, y): images in [-1, 1] of latents z [N, z_dim] and classes y [N]."""

    def __init__(
        self,
        num_classes: int,
        img_resolution: int,
        img_channels: int = 3,
        ch: int = 96,
        z_dim: int = 120,
        shared_dim: int = 128,
        attention: Sequence[int] = (64,),
        hier: bool = True,
    ):
        super().__init__()
        _check_resolution(img_resolution)
        ins, outs = ([ch * m for m in mults] for mults in G_CHANNELS[img_resolution])
        self.num_classes, self.img_resolution, self.hier = num_classes, img_resolution, hier
        slots = len(ins) + 1 if hier else 1
        self.chunk = z_dim // slots
        self.z_dim = self.chunk * slots  # BigGAN rounds z_dim down to a multiple of the slots
        condition_dim = shared_dim + self.chunk if hier else shared_dim
        self.shared = orthogonal(nn.Embedding(num_classes, shared_dim))
        self.linear = sn_linear(self.chunk, ins[0] * BOTTOM_WIDTH**2)
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        resolution = BOTTOM_WIDTH
        for index, (i, o) in enumerate(zip(ins, outs, strict=True)):
            resolution *= 2
            self.blocks.append(GBlock(i, o, condition_dim))
            if resolution in attention:
                self.attention[str(index)] = Attention(o)
        self.output_bn = nn.BatchNorm2d(outs[-1], eps=BN_EPS)
        self.output_conv = sn_conv(outs[-1], img_channels)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        y = self.shared(labels)
        if self.hier:
            first, *chunks = z.split(self.chunk, dim=1)
            conditions = [torch.cat([y, c], dim=1) for c in chunks]
        else:
            first, conditions = z, [y] * len(self.blocks)
        h = self.linear(first).view(len(z), -1, BOTTOM_WIDTH, BOTTOM_WIDTH)
        for index, block in enumerate(self.blocks):
            h = block(h, conditions[index])
            if str(index) in self.attention:
                h = self.attention[str(index)](h)
        return torch.tanh(self.output_conv(F.relu(self.output_bn(h))))


class DBlock(nn.Module):
    """Wide residual down-block: [ReLU]-conv-ReLU-conv-[avgpool]; the shortcut is a 1x1
    conv (when the channels change or it downsamples), before the pooling after a
    pre-activation and after it in the first block, as BigGAN-PyTorch."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, preactivation: bool):
        super().__init__()
        self.conv1 = sn_conv(in_channels, out_channels)
        self.conv2 = sn_conv(out_channels, out_channels)
        self.downsample, self.preactivation = downsample, preactivation
        learnable = in_channels != out_channels or downsample
        self.shortcut = sn_conv(in_channels, out_channels, kernel=1) if learnable else None

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.relu(x) if self.preactivation else x)
        h = self._pool(self.conv2(F.relu(h)))
        if self.shortcut is None:
            return h + x
        if self.preactivation:
            return h + self._pool(self.shortcut(x))
        return h + self.shortcut(self._pool(x))


class Discriminator(nn.Module):
    """D(x, y): projection-discriminator logits [N, 1] of images [-1, 1] and classes y."""

    def __init__(
        self,
        num_classes: int,
        img_resolution: int,
        img_channels: int = 3,
        ch: int = 96,
        attention: Sequence[int] = (64,),
    ):
        super().__init__()
        _check_resolution(img_resolution)
        self.num_classes, self.img_resolution = num_classes, img_resolution
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        channels, resolution = img_channels, img_resolution
        for index, (mult, downsample) in enumerate(D_BLOCKS[img_resolution]):
            self.blocks.append(DBlock(channels, ch * mult, downsample, preactivation=index > 0))
            channels = ch * mult
            resolution //= 2 if downsample else 1
            if resolution in attention:
                self.attention[str(index)] = Attention(channels)
        self.linear = sn_linear(channels, 1)
        self.embed = spectrally_normalised(nn.Embedding(num_classes, channels))

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        h = images
        for index, block in enumerate(self.blocks):
            h = block(h)
            if str(index) in self.attention:
                h = self.attention[str(index)](h)
        h = F.relu(h).sum(dim=[2, 3])
        return self.linear(h) + (self.embed(labels) * h).sum(dim=1, keepdim=True)
