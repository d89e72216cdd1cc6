"""FastGAN (Liu, Zhu, Song and Elgammal, ICLR 2021): the backbone of MixDL's FastGAN rows.

The generator maps z ~ N(0, I) through a transposed 4x4 convolution to 4², then doubles the
resolution block by block (nearest upsampling, 3x3 convolutions, batch norm, GLU; every other
block with a second convolution and noise inputs). Skip-layer excitation (SLE) gates a
feature map at resolution r (64 <= r <= 512) with channel weights computed from the map at
r / 16. The discriminator reads the image at two scales and is self-supervised: three small
decoders reconstruct the image, a random quadrant of it, and its small-scale view from D's
features, and D's loss on real images includes the reconstruction distance.

At 128² and above the layers, channel counts and SLE pairs are those of the authors' code
(github.com/odegeasslbc/FastGAN-pytorch, ``models.py``), with its width ``ngf``/``ndf``, its
initialisation (N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales) and spectral norm on
every convolution. Two departures:

* below 128² (the demo) the networks are the same blocks with fewer stages: D's big branch
  stops at 4², its small branch and the decoders work at half the image size;
* the authors' generator also outputs a 128² image from its 128² features, which only D's
  small branch reads; here the small branch reads the generated image resized, as it reads
  real images in the authors' code, so fake and real images reach it the same way.

As in the authors' code the image is the last convolution's output without a ``tanh``
(below 1024²); the decoders end in ``tanh``.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

#: channels per resolution, in multiples of ngf (generator) and ndf (discriminator)
G_CHANNELS = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
D_CHANNELS = {4: 16, 8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
DECODER_CHANNELS = {16: 128, 32: 64, 64: 64, 128: 32}  # the decoders' fixed widths
NOISE_MODES = ("random", "const", "none")


def _conv(*args, **kwargs) -> nn.Module:
    """A spectrally normalised convolution without bias (every convolution of FastGAN)."""
    return spectral_norm(nn.Conv2d(*args, bias=False, **kwargs))


def _init_weights(module: nn.Module) -> None:
    """The authors' initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            weight = layer.parametrizations.weight.original
            nn.init.normal_(weight, 0.0, 0.02)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


class GLU(nn.Module):
    """Gated linear unit over channels: first half times the sigmoid of the second."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


class Swish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class NoiseInjection(nn.Module):
    """x + s * n: one learned strength s (initially 0), n ~ N(0, 1) per pixel; ``const``
    noise is a fixed map drawn at construction (saved with the weights), ``none`` adds none."""

    def __init__(self, resolution: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, noise_mode: str) -> Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const
        else:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device)
        return x + self.strength * noise.to(x.dtype)


class UpBlock(nn.Module):
    """Double the resolution: nearest upsampling, then (one or two) 3x3 conv -> [noise] ->
    batch norm -> GLU. ``comp`` (the authors' ``UpBlockComp``) has two, with noise."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, comp: bool):
        super().__init__()
        self.comp = comp
        self.conv0 = _conv(in_channels, out_channels * 2, 3, 1, 1)
        self.norm0 = nn.BatchNorm2d(out_channels * 2)
        if comp:
            self.noise0 = NoiseInjection(resolution)
            self.conv1 = _conv(out_channels, out_channels * 2, 3, 1, 1)
            self.noise1 = NoiseInjection(resolution)
            self.norm1 = nn.BatchNorm2d(out_channels * 2)
        self.glu = GLU()

    def forward(self, x: Tensor, noise_mode: str) -> Tensor:
        x = self.conv0(F.interpolate(x, scale_factor=2, mode="nearest"))
        if self.comp:
            x = self.noise0(x, noise_mode)
        x = self.glu(self.norm0(x))
        if self.comp:
            x = self.glu(self.norm1(self.noise1(self.conv1(x), noise_mode)))
        return x


class SkipLayerExcitation(nn.Module):
    """SLE: ``big`` times per-channel gates from ``small`` (pool to 4², 4x4 conv, swish,
    1x1 conv, sigmoid)."""

    def __init__(self, small_channels: int, big_channels: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            _conv(small_channels, big_channels, 4, 1, 0),
            Swish(),
            _conv(big_channels, big_channels, 1, 1, 0),
            nn.Sigmoid(),
        )

    def forward(self, small: Tensor, big: Tensor) -> Tensor:
        return big * self.gate(small)


def _check_resolution(resolution: int) -> None:
    if resolution < 32 or resolution > 1024 or resolution & (resolution - 1):
        raise ValueError(f"FastGAN needs a power-of-two resolution in [32, 1024], not {resolution}")


def sle_pairs(resolution: int) -> list[tuple[int, int]]:
    """(source, target) resolutions of the generator's skip-layer excitations: r / 16 -> r
    for 64 <= r <= min(512, resolution) (the authors' se_64 ... se_512)."""
    return [(r // 16, r) for r in (64, 128, 256, 512) if r <= resolution]


class Generator(nn.Module):
    """FastGAN's generator: z [N, z_dim] -> image [N, 3, R, R] (about [-1, 1])."""

    def __init__(
        self, z_dim: int = 256, img_resolution: int = 256, img_channels: int = 3, ngf: int = 64
    ):
        super().__init__()
        _check_resolution(img_resolution)
        self.z_dim, self.img_resolution, self.img_channels = z_dim, img_resolution, img_channels
        ch = {r: int(m * ngf) for r, m in G_CHANNELS.items()}
        self.resolutions = [2**k for k in range(3, int(math.log2(img_resolution)) + 1)]
        self.init = nn.Sequential(
            spectral_norm(nn.ConvTranspose2d(z_dim, ch[4] * 2, 4, 1, 0, bias=False)),
            nn.BatchNorm2d(ch[4] * 2),
            GLU(),
        )
        # UpBlockComp at 8, 32, 128, 512; UpBlock at 16, 64, 256, 1024 (the authors' order).
        self.blocks = nn.ModuleDict(
            {
                str(r): UpBlock(ch[r // 2], ch[r], r, comp=int(math.log2(r)) % 2 == 1)
                for r in self.resolutions
            }
        )
        self.sle = nn.ModuleDict(
            {
                str(big): SkipLayerExcitation(ch[small], ch[big])
                for small, big in sle_pairs(img_resolution)
            }
        )
        self.to_image = _conv(ch[img_resolution], img_channels, 3, 1, 1)
        _init_weights(self)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "random",
        features: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Images of latents ``z``. ``c`` (no classes) and ``truncation_psi`` (FastGAN has no
        mean latent to truncate towards, so only 1) keep StyleGAN2's call signature;
        ``features`` receives every feature map by its resolution (``"4"``, ``"8"``, ...)."""
        if truncation_psi != 1.0:
            raise ValueError("FastGAN has no truncation trick: truncation_psi must be 1")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode {noise_mode!r}: one of {NOISE_MODES}")
        maps = {4: self.init(z.reshape(z.shape[0], -1, 1, 1))}
        x = maps[4]
        for r in self.resolutions:
            x = self.blocks[str(r)](x, noise_mode)
            if str(r) in self.sle:
                x = self.sle[str(r)](maps[r // 16], x)
            maps[r] = x
        if features is not None:
            features.update({str(r): f for r, f in maps.items()})
        image = self.to_image(x)
        return torch.tanh(image) if self.img_resolution == 1024 else image


class DownBlock(nn.Module):
    """Halve the resolution: 4x4 stride-2 conv, batch norm, leaky ReLU (0.2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.main = nn.Sequential(
            _conv(in_channels, out_channels, 4, 2, 1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class DownBlockComp(nn.Module):
    """The mean of two halving paths: (4x4 stride-2 conv, BN, lrelu, 3x3 conv, BN, lrelu) and
    (2x2 average pool, 1x1 conv, BN, lrelu)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.main = nn.Sequential(
            DownBlock(in_channels, out_channels),
            _conv(out_channels, out_channels, 3, 1, 1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2),
        )
        self.direct = nn.Sequential(
            nn.AvgPool2d(2),
            _conv(in_channels, out_channels, 1, 1, 0),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return (self.main(x) + self.direct(x)) / 2


class SimpleDecoder(nn.Module):
    """Features -> image at ``resolution``: pool to 8², then upsampling blocks (conv, BN, GLU)
    to ``resolution``, a 3x3 conv and tanh."""

    def __init__(self, in_channels: int, resolution: int, img_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(8)]
        channels, r = in_channels, 8
        while r < resolution:
            r *= 2
            out = DECODER_CHANNELS[r]
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                _conv(channels, out * 2, 3, 1, 1),
                nn.BatchNorm2d(out * 2),
                GLU(),
            ]
            channels = out
        layers += [_conv(channels, img_channels, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def quadrant(x: Tensor, part: int) -> Tensor:
    """Quadrant ``part`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of NCHW ``x``."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    row, col = divmod(part, 2)
    return x[:, :, row * h : (row + 1) * h, col * w : (col + 1) * w]


class Discriminator(nn.Module):
    """FastGAN's discriminator: logits ``[N, P]`` (the patch logits of the big branch then of
    the small one) and, on request, the three reconstructions of the self-supervision."""

    def __init__(self, img_resolution: int = 256, img_channels: int = 3, ndf: int = 64):
        super().__init__()
        _check_resolution(img_resolution)
        self.img_resolution = img_resolution
        ch = {r: int(m * ndf) for r, m in D_CHANNELS.items()}
        # Big branch: a stem to min(R, 256)², then DownBlockComps to 8² (4² below 256²).
        self.big_size = min(img_resolution, 256)
        depth = min(5, int(math.log2(self.big_size)) - 2)
        path = [ch[512], ch[256], ch[128], ch[64], ch[32], ch[16]][5 - depth :]
        if img_resolution == 1024:
            self.stem = nn.Sequential(
                _conv(img_channels, ch[1024], 4, 2, 1), nn.LeakyReLU(0.2),
                _conv(ch[1024], ch[512], 4, 2, 1), nn.BatchNorm2d(ch[512]), nn.LeakyReLU(0.2),
            )  # fmt: skip
        else:
            kernel, stride, pad = (4, 2, 1) if img_resolution == 512 else (3, 1, 1)
            self.stem = nn.Sequential(
                _conv(img_channels, path[0], kernel, stride, pad), nn.LeakyReLU(0.2)
            )
        side = self.big_size >> depth
        self.last_shape = (path[-1], side, side)  # of the map the logits and L_dist^D read
        self.downs = nn.ModuleList(DownBlockComp(a, b) for a, b in pairwise(path))
        # SLE inside D: the map 3 stages up gates each of the last stages.
        self.sle = nn.ModuleDict(
            {str(k): SkipLayerExcitation(path[k - 3], path[k]) for k in range(3, depth + 1)}
        )
        self.logits_big = nn.Sequential(
            _conv(ch[16], ch[8], 1, 1, 0), nn.BatchNorm2d(ch[8]), nn.LeakyReLU(0.2),
            _conv(ch[8], 1, 4, 1, 0),
        )  # fmt: skip
        # Small branch: the image at 128² (half the image below 256²), down to 8².
        self.small_size = 128 if img_resolution >= 128 else img_resolution // 2
        halvings = int(math.log2(self.small_size)) - 3
        small_path = [ch[256], ch[128], ch[64], ch[32]][4 - halvings :]
        self.small = nn.Sequential(
            _conv(img_channels, small_path[0], 4, 2, 1),
            nn.LeakyReLU(0.2),
            *(DownBlock(a, b) for a, b in pairwise(small_path)),
        )
        self.logits_small = _conv(ch[32], 1, 4, 1, 0)
        self.decoder_big = SimpleDecoder(ch[16], self.small_size, img_channels)
        self.decoder_part = SimpleDecoder(ch[32], self.small_size, img_channels)
        self.decoder_small = SimpleDecoder(ch[32], self.small_size, img_channels)
        _init_weights(self)

    def forward(
        self,
        images: Tensor,
        c: Tensor | None = None,
        part: int | None = None,
        features: dict[str, Tensor] | None = None,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits ``[N, P]`` of ``images`` [N, C, R, R]; with ``part`` (0-3), also the
        reconstructions (whole image, quadrant ``part``, small view), each at ``small_size``²
        (compare with :meth:`reconstruction_targets`). ``features`` receives the big branch's
        last feature map (``"last"``, 8² or 4²), which the logits' 1x1/4x4 convs read."""
        big = F.interpolate(images, size=self.img_resolution, mode="nearest")
        feats = [self.stem(big)]
        for k, down in enumerate(self.downs, start=1):
            x = down(feats[-1])
            if str(k) in self.sle:
                x = self.sle[str(k)](feats[k - 3], x)
            feats.append(x)
        if features is not None:
            features["last"] = feats[-1]
        small = self.small(F.interpolate(images, size=self.small_size, mode="nearest"))
        logits = torch.cat(
            [self.logits_big(feats[-1]).flatten(1), self.logits_small(small).flatten(1)], dim=1
        )
        if part is None:
            return logits
        reconstructions = [
            self.decoder_big(feats[-1]),
            self.decoder_part(quadrant(feats[-2], part)),
            self.decoder_small(small),
        ]
        return logits, reconstructions

    def reconstruction_targets(self, images: Tensor, part: int) -> list[Tensor]:
        """What the reconstructions of ``images`` should be: the image and its quadrant
        ``part``, and the image again (small view), resized to ``small_size``² (nearest)."""
        size = self.small_size
        whole = F.interpolate(images, size=size, mode="nearest")
        piece = F.interpolate(quadrant(images, part), size=size, mode="nearest")
        return [whole, piece, whole]
