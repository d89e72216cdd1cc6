"""SinCUT's networks (Park et al., ECCV 2020, Fig. 9): generator, discriminator and the PatchNCE
projection head, as the official code builds them for ``--model sincut``.

Source: taesungp/contrastive-unpaired-translation at commit b3ac297 (cited as ``file:line``).
SinCUT sets ``netG=stylegan2``, ``netD=stylegan2``, ``ngf=10``, ``ndf=8``,
``stylegan2_G_num_downsampling=1`` (models/sincut_model.py:20-37); the networks come from
models/stylegan_networks.py (rosinality's StyleGAN2 layers) and models/networks.py.

* :class:`SinCUTGenerator` (``StyleGAN2Generator``, stylegan_networks.py:797-914): an encoder
  ``[Identity, 1x1 conv from RGB, 1 downsampling ResBlock, 3 ResBlocks]`` and a decoder
  ``[3 ResBlocks, 1 upsampling StyledConv (no style, demodulated, noise), 1x1 conv to RGB]``;
  ``n_blocks=6`` (networks.py:260) gives 3 + 3 ResBlocks. The last layer is the official
  ``ConvLayer(ch, 3, 1)`` with its default leaky ReLU (x sqrt 2), so the output is not in
  [-1, 1] by construction (stylegan_networks.py:889). Fully convolutional: it translates
  images of any size whose sides are even (one downsampling).
* :class:`SinCUTDiscriminator` (``StyleGAN2Discriminator``, stylegan_networks.py:695-783): 1x1
  conv from RGB, downsampling ResBlocks to 4x4, a 3x3 conv, two dense layers; no minibatch
  stddev (its branch is ``if False``, :766). It only takes ``patch_size``² inputs.
* :class:`PatchSampleF` (networks.py:531-583, ``netF=mlp_sample``, ``netF_nc=256``): per NCE
  layer a 2-layer MLP (Linear, ReLU, Linear) on features sampled at shared random positions,
  then L2 normalisation; initialised ``xavier_normal`` with gain 0.02 and zero biases
  (``init_type=xavier``, ``init_gain=0.02``, base_options.py:42-43; ``init_net`` at
  networks.py:284, 550).

Channel widths follow the training crop (the official ``cur_res = 2 ** rint(log2(min(load_size,
crop_size)))``, stylegan_networks.py:701, 817, 873): with ``patch_size`` 64 (SinCUT's
``crop_size``) G has 3,068,404 parameters, with 128 (ScoreMix §4.6) 767,804.

The layers are the project's StyleGAN2 layers where the operation is the same:
``Conv2dLayer`` is rosinality's ``ConvLayer`` (equalized lr 1/sqrt(fan-in), bias then leaky
ReLU 0.2 times sqrt 2; with ``down=2`` the [1, 3, 3, 1] blur padded (2, 2) for 3x3 and (1, 1)
for 1x1 kernels before the stride-2 convolution), ``FullyConnectedLayer`` is ``EqualLinear``
and ``conv2d_resample(up=2)`` is ``ModulatedConv2d(upsample=True)``'s transposed convolution
followed by the blur padded (1, 1) with gain 4. Every weight starts N(0, 1) and every bias at 0,
as the official StyleGAN2 networks are not re-initialised (networks.py:268, 330-331). The
parameters are registered in the official order, so ``zip(official.parameters(),
ours.parameters())`` pairs each tensor with its counterpart (the official biases have shape
[1, C, 1, 1] and the StyledConv weight [1, O, I, k, k]; ours drop the singleton axes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import Conv2dLayer, FullyConnectedLayer, bias_act
from .resample import conv2d_resample, fir_filter

#: SinCUT's defaults (models/sincut_model.py:20-37, models/cut_model.py:27-33)
SINCUT_NGF = 10
SINCUT_NDF = 8
SINCUT_NCE_LAYERS = (0, 2, 4)
SINCUT_NETF_NC = 256
#: the official training crop (``crop_size=64``) and ScoreMix's patch size (§4.6)
SINCUT_CROP_SIZE = 64
SCOREMIX_PATCH_SIZE = 128


def _log2_size(size: int) -> int:
    """log2 of ``size`` rounded to the nearest integer (``np.rint(np.log2(size))``)."""
    if size < 8:
        raise ValueError(f"patch size must be at least 8, got {size}")
    return round(math.log2(size))


def generator_channels(ngf: int = SINCUT_NGF) -> dict[int, int]:
    """G's channels per resolution r (stylegan_networks.py:802-813): ``round(16384 / r * ngf /
    32)``, at most 512 for r <= 32."""
    multiplier = ngf / 32
    return {
        2**i: min(512, round((16384 // 2**i) * multiplier))
        if i <= 5
        else round((16384 // 2**i) * multiplier)
        for i in range(2, 11)
    }


def discriminator_channels(ndf: int = SINCUT_NDF) -> dict[int, int]:
    """D's channels per resolution (stylegan_networks.py:706-717): ``int(16384 / r * ndf /
    64)``, at most 384 for r <= 32."""
    multiplier = ndf / 64
    return {
        2**i: min(384, int((16384 // 2**i) * multiplier))
        if i <= 5
        else int((16384 // 2**i) * multiplier)
        for i in range(2, 11)
    }


class ResBlock(nn.Module):
    """rosinality's ``ResBlock`` (stylegan_networks.py:670-692): 3x3 conv, 3x3 conv (stride 2
    after the blur when ``downsample``), plus a 1x1 skip (identity when the shape is kept);
    the sum is divided by sqrt(2) (``skip_gain`` 1)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        down = 2 if downsample else 1
        self.conv1 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv2 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=down)
        self.skip: nn.Module
        if in_channels != out_channels or downsample:
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=down)
        else:
            self.skip = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class UpsampleStyledConv(nn.Module):
    """The decoder's ``StyledConv(in, out, 3, upsample=True)`` without a style input
    (stylegan_networks.py:247-414, 884-886): the weight scaled by 1/sqrt(fan-in) and
    demodulated per output channel (rsqrt of its sum of squares + 1e-8), a 2x upsampling
    convolution, per-pixel noise times a learned strength (initially 0), bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, inject_noise: bool = True) -> None:
        super().__init__()
        self.inject_noise = inject_noise
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)

    def forward(self, x: Tensor, noise_generator: torch.Generator | None = None) -> Tensor:
        weight = self.weight * self.weight_gain
        weight = weight * (weight.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()
        x = conv2d_resample(x, weight.to(x.dtype), self.resample_filter, up=2)
        if self.inject_noise:
            n, _, h, w = x.shape
            noise = torch.randn(
                (n, 1, h, w), generator=noise_generator, device=x.device, dtype=x.dtype
            )
            x = x + self.noise_strength * noise
        return bias_act(x, self.bias, "lrelu")


class SinCUTGenerator(nn.Module):
    """SinCUT's StyleGAN2-based encoder-decoder generator (``StyleGAN2Generator``).

    ``encode(x, layers)`` returns the activations after the listed encoder layers (layer 0 is
    the input itself, 1 the conv from RGB, 2 the downsampling ResBlock, 3-5 the ResBlocks), as
    the official ``netG(x, nce_layers, encode_only=True)``.
    """

    def __init__(
        self,
        patch_size: int = SCOREMIX_PATCH_SIZE,
        ngf: int = SINCUT_NGF,
        num_downsampling: int = 1,
        n_blocks: int = 6,
        inject_noise: bool = True,
        img_channels: int = 3,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_downsampling = num_downsampling
        channels = generator_channels(ngf)
        res = 2 ** _log2_size(patch_size)
        encoder: list[nn.Module] = [
            nn.Identity(),
            Conv2dLayer(img_channels, channels[res], 1, activation="lrelu"),
        ]
        self.layer_channels = [img_channels, channels[res]]
        for _ in range(num_downsampling):
            encoder.append(ResBlock(channels[res], channels[res // 2], downsample=True))
            res //= 2
            self.layer_channels.append(channels[res])
        for _ in range(n_blocks // 2):
            encoder.append(ResBlock(channels[res], channels[res], downsample=False))
            self.layer_channels.append(channels[res])
        self.encoder = nn.ModuleList(encoder)

        decoder: list[nn.Module] = [
            ResBlock(channels[res], channels[res], downsample=False) for _ in range(n_blocks // 2)
        ]
        for _ in range(num_downsampling):
            decoder.append(UpsampleStyledConv(channels[res], channels[res * 2], inject_noise))
            res *= 2
        decoder.append(Conv2dLayer(channels[res], img_channels, 1, activation="lrelu"))
        self.decoder = nn.ModuleList(decoder)

    def nce_channels(self, layers: Sequence[int] = SINCUT_NCE_LAYERS) -> list[int]:
        """Channels of the encoder activations that ``encode(x, layers)`` returns."""
        return [self.layer_channels[i] for i in layers]

    def encode(self, x: Tensor, layers: Sequence[int] = SINCUT_NCE_LAYERS) -> list[Tensor]:
        """The encoder's activations after each of ``layers`` (ids into the encoder, in
        increasing order of depth; stylegan_networks.py:834-848)."""
        wanted = set(layers)
        if not wanted <= set(range(len(self.encoder))):
            raise ValueError(f"layers must lie in 0..{len(self.encoder) - 1}, got {layers}")
        feats: dict[int, Tensor] = {}
        for idx, layer in enumerate(self.encoder):
            x = layer(x)
            if idx in wanted:
                feats[idx] = x
            if len(feats) == len(wanted):
                break
        return [feats[i] for i in layers]

    def forward(self, x: Tensor, noise_generator: torch.Generator | None = None) -> Tensor:
        """Translate ``x`` [N, C, H, W] (H, W divisible by 2 ** num_downsampling); the noise of
        the upsampling convs comes from ``noise_generator`` (the global RNG if None)."""
        factor = 2**self.num_downsampling
        if x.ndim != 4 or x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"expected [N, C, H, W] with H, W divisible by {factor}")
        for layer in self.encoder:
            x = layer(x)
        for layer in self.decoder:
            x = layer(x, noise_generator) if isinstance(layer, UpsampleStyledConv) else layer(x)
        return x


class SinCUTDiscriminator(nn.Module):
    """SinCUT's ``StyleGAN2Discriminator`` (``netD=stylegan2``); logits [N, 1] for
    ``patch_size``² images."""

    def __init__(
        self, patch_size: int = SCOREMIX_PATCH_SIZE, ndf: int = SINCUT_NDF, img_channels: int = 3
    ) -> None:
        super().__init__()
        log2 = _log2_size(patch_size)
        self.size = 2**log2
        self.img_channels = img_channels
        channels = discriminator_channels(ndf)
        self.fromrgb = Conv2dLayer(img_channels, channels[self.size], 1, activation="lrelu")
        self.blocks = nn.ModuleList(
            ResBlock(channels[2**i], channels[2 ** (i - 1)], downsample=True)
            for i in range(log2, 2, -1)
        )
        self.final_conv = Conv2dLayer(channels[4], channels[4], 3, activation="lrelu")
        self.fc = FullyConnectedLayer(channels[4] * 16, channels[4], activation="lrelu")
        self.out = FullyConnectedLayer(channels[4], 1)

    def forward(self, img: Tensor) -> Tensor:
        expected = (self.img_channels, self.size, self.size)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"expected images of shape [N, {', '.join(map(str, expected))}]")
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.final_conv(x)
        return self.out(self.fc(x.flatten(1)))


def l2_normalize(x: Tensor) -> Tensor:
    """``x / (||x||_2 + 1e-7)`` along dim 1 (networks.py ``Normalize``, :449-458)."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-7)


class PatchSampleF(nn.Module):
    """PatchNCE's projection head ``netF=mlp_sample`` (networks.py:531-583).

    For each feature map it picks ``num_patches`` spatial positions (the same positions for
    every image of the batch; drawn without replacement unless ``patch_ids`` are given), runs
    the layer's MLP on the [N * num_patches, C] samples and L2-normalises them. The official
    module builds its MLPs at the first forward pass; here they are built from ``in_channels``
    (``SinCUTGenerator.nce_channels``), under the official names ``mlp_<i>``.
    """

    def __init__(
        self, in_channels: Sequence[int], nc: int = SINCUT_NETF_NC, init_gain: float = 0.02
    ) -> None:
        super().__init__()
        self.nc = nc
        self.num_layers = len(in_channels)
        for idx, channels in enumerate(in_channels):
            mlp = nn.Sequential(nn.Linear(channels, nc), nn.ReLU(), nn.Linear(nc, nc))
            for module in mlp:
                if isinstance(module, nn.Linear):
                    nn.init.xavier_normal_(module.weight, gain=init_gain)
                    nn.init.zeros_(module.bias)
            self.add_module(f"mlp_{idx}", mlp)

    def forward(
        self,
        feats: Sequence[Tensor],
        num_patches: int,
        patch_ids: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Projected samples ([N * num_patches, nc] per layer, image-major) and the positions
        used (flattened h * W + w indices, on the CPU); ``generator`` draws new positions."""
        if len(feats) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} feature maps, got {len(feats)}")
        if num_patches < 1:
            raise ValueError("num_patches must be positive (SinCUT samples 1, CUT 256)")
        out, ids = [], []
        for idx, feat in enumerate(feats):
            positions = feat.shape[2] * feat.shape[3]
            if patch_ids is None:
                patch_id = torch.randperm(positions, generator=generator)[:num_patches]
            else:
                patch_id = patch_ids[idx].cpu()
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)
            sample = flat[:, patch_id.to(feat.device), :].flatten(0, 1)
            sample = getattr(self, f"mlp_{idx}")(sample)
            out.append(l2_normalize(sample))
            ids.append(patch_id)
        return out, ids


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def copy_official_parameters(module: nn.Module, values: Sequence[Tensor]) -> None:
    """Copy ``values``, the official network's parameters in its ``parameters()`` order, into
    ``module``'s parameters; shapes may differ only by singleton axes."""
    params = list(module.parameters())
    if len(params) != len(values):
        raise ValueError(f"{len(values)} tensors for {len(params)} parameters")
    with torch.no_grad():
        for param, value in zip(params, values, strict=True):
            squeezed = [s for s in value.shape if s != 1]
            if param.numel() != value.numel() or [s for s in param.shape if s != 1] != squeezed:
                raise ValueError(f"shape {tuple(value.shape)} for a {tuple(param.shape)} tensor")
            param.copy_(value.reshape(param.shape))


def load_official_state_dict(module: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Load a state dict of the official ``netG``, ``netD`` or ``netF`` (e.g. from its
    ``latest_net_G.pth``) into the matching module here: its entries minus the blur
    ``kernel`` buffers are the parameters in ``parameters()`` order."""
    values = [v for k, v in state_dict.items() if not k.endswith("kernel")]
    copy_official_parameters(module, values)
