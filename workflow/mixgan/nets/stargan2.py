"""StarGAN v2 networks (Choi et al., CVPR 2020) as in clovaai/stargan-v2 ``core/model.py``.

Four networks, with the official AFHQ settings as defaults (:class:`StarGANv2Config`):

* :class:`Generator`: a convolutional encoder of residual blocks with instance norm
  (``ResBlk``), halving the resolution ``log2(img_size) - 4`` times (256² -> 16²), two
  bottleneck blocks, and a mirrored decoder of residual blocks whose norms are AdaIN layers
  driven by the style code (``AdainResBlk``), then instance norm, LeakyReLU and a 1x1 conv to
  RGB (no tanh). The high-pass skip path of the CelebA-HQ model (``w_hpf > 0``, with the FAN
  landmark network) is not built: AFHQ trains and evaluates with ``--w_hpf 0`` (README, AFHQ
  commands), so every decoder block adds its shortcut.
* :class:`MappingNetwork`: z (``latent_dim`` 16) -> 4 shared ReLU layers of ``hidden_dim`` 512
  -> one head of 4 layers per domain -> style (``style_dim`` 64); the label picks the head.
* :class:`StyleEncoder`: image -> residual blocks down to 4², a 4x4 conv, one linear head per
  domain -> style.
* :class:`Discriminator`: the same trunk with a 1x1 conv to one logit per domain; the label
  picks the logit (multi-task discriminator).

Each head is computed for every domain and the label selects one, as the official code does,
so the heads of other domains get zero gradients (and so still see Adam's weight decay).
Modules are constructed and registered in the official order, so the same seed gives the same
initial weights. The parameter names are ours; :func:`load_official_state_dict` loads a
state_dict saved by the official ``CheckpointIO`` (names such as ``encode.0.conv1x1.weight``)
and :func:`to_official_state_dict` writes one. ``base_dim`` (official: ``2**14 // img_size``,
64 at 256²) and ``hidden_dim`` (512, fixed in the official code) are parameters only so that
tests can build tiny networks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: LeakyReLU slope of every residual block and of the trunk's epilogue (core/model.py:24, 235)
LRELU_SLOPE = 0.2


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _log2(img_size: int, minimum: int) -> int:
    if img_size < minimum or img_size & (img_size - 1):
        raise ValueError(f"img_size must be a power of two >= {minimum}, got {img_size}")
    return img_size.bit_length() - 1


def _select(per_domain: Tensor, labels: Tensor) -> Tensor:
    """Row i of ``per_domain`` [N, domains, ...] at domain ``labels[i]``."""
    return per_domain[torch.arange(len(labels), device=labels.device), labels]


@dataclass(frozen=True)
class StarGANv2Config:
    """Architecture settings; defaults are the official AFHQ model.

    Sources (clovaai/stargan-v2): ``img_size`` 256 (main.py:87), ``num_domains`` 3 (README's
    AFHQ commands, ``--num_domains 3``), ``latent_dim`` 16 (main.py:91), ``style_dim`` 64
    (main.py:95), ``max_conv_dim`` 512 (core/model.py:137, 223, 257 defaults; build_model
    passes none), ``hidden_dim`` 512 (core/model.py:194-209; main.py's ``--hidden_dim`` is
    never used), ``w_hpf`` 0 (README's AFHQ commands, ``--w_hpf 0``), ``base_dim``
    ``2**14 // img_size`` (core/model.py:139, 225, 259).
    """

    img_size: int = 256
    num_domains: int = 3
    latent_dim: int = 16
    style_dim: int = 64
    max_conv_dim: int = 512
    hidden_dim: int = 512
    w_hpf: float = 0.0
    base_dim: int | None = None

    def __post_init__(self) -> None:
        if self.w_hpf != 0:
            raise ValueError(
                "only w_hpf = 0 (AFHQ) is implemented: the high-pass path needs the FAN "
                "face-landmark network of the CelebA-HQ model"
            )
        _log2(self.img_size, 32)

    @property
    def first_dim(self) -> int:
        """Channels after the first conv: ``base_dim``, else 2**14 // img_size."""
        return self.base_dim if self.base_dim is not None else 2**14 // self.img_size


# ----------------------------------------------------------------------------------------------
# Blocks.


class ResBlock(nn.Module):
    """Pre-activation residual block (official ``ResBlk``): optional instance norm with
    affine parameters, LeakyReLU 0.2, 3x3 convs, 2x average-pool downsampling, a 1x1 conv
    (no bias) on the shortcut when the width changes, output scaled by 1/sqrt(2)."""

    def __init__(
        self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.downsample = downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.skip = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.skip(x) if self.skip is not None else x
        if self.downsample:
            shortcut = F.avg_pool2d(shortcut, 2)
        h = self.norm1(x) if self.normalize else x
        h = self.conv1(F.leaky_relu(h, LRELU_SLOPE))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.normalize:
            h = self.norm2(h)
        h = self.conv2(F.leaky_relu(h, LRELU_SLOPE))
        return (shortcut + h) / math.sqrt(2)


class AdaIN(nn.Module):
    """Instance norm without affine parameters, then ``(1 + gamma) * x + beta`` with
    (gamma, beta) a linear function of the style code."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.affine = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        gamma, beta = self.affine(style)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * F.instance_norm(x) + beta


class AdaINResBlock(nn.Module):
    """Decoder block (official ``AdainResBlk`` with ``w_hpf = 0``): AdaIN, LeakyReLU 0.2,
    optional 2x nearest upsampling, two 3x3 convs; a shortcut (upsampled, 1x1 conv without bias
    when the width changes) is added and the sum scaled by 1/sqrt(2)."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        self.skip = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        h = self._up(F.leaky_relu(self.norm1(x, style), LRELU_SLOPE))
        h = self.conv2(F.leaky_relu(self.norm2(self.conv1(h), style), LRELU_SLOPE))
        shortcut = self._up(x)
        if self.skip is not None:
            shortcut = self.skip(shortcut)
        return (h + shortcut) / math.sqrt(2)


# ----------------------------------------------------------------------------------------------
# Networks.


class Generator(nn.Module):
    """(source image, style code) -> translated image, same size, unbounded range."""

    def __init__(self, config: StarGANv2Config) -> None:
        super().__init__()
        self.config = config
        dim = config.first_dim
        self.stem = nn.Conv2d(3, dim, 3, 1, 1)
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()  # in forward order: deepest block first
        self.out_norm = nn.InstanceNorm2d(dim, affine=True)
        self.out_conv = nn.Conv2d(dim, 3, 1, 1, 0)
        for _ in range(_log2(config.img_size, 32) - 4):
            dim_out = min(dim * 2, config.max_conv_dim)
            self.encoder.append(ResBlock(dim, dim_out, normalize=True, downsample=True))
            self.decoder.insert(0, AdaINResBlock(dim_out, dim, config.style_dim, upsample=True))
            dim = dim_out
        for _ in range(2):  # bottleneck
            self.encoder.append(ResBlock(dim, dim, normalize=True))
            self.decoder.insert(0, AdaINResBlock(dim, dim, config.style_dim))

    def forward(self, images: Tensor, style: Tensor) -> Tensor:
        h = self.stem(images)
        for block in self.encoder:
            h = block(h)
        for block in self.decoder:
            h = block(h, style)
        return self.out_conv(F.leaky_relu(self.out_norm(h), LRELU_SLOPE))

    def official_key(self, key: str) -> str:
        """The official parameter name of our ``key``."""
        key = re.sub(r"^stem\.", "from_rgb.", key)
        key = re.sub(r"^encoder\.", "encode.", key)
        key = re.sub(r"^decoder\.", "decode.", key)
        key = re.sub(r"^out_norm\.", "to_rgb.0.", key)
        key = re.sub(r"^out_conv\.", "to_rgb.2.", key)
        key = key.replace(".affine.", ".fc.")
        return key.replace(".skip.", ".conv1x1.")


class MappingNetwork(nn.Module):
    """(z, domain) -> style code: shared ReLU MLP, then the domain's head."""

    def __init__(self, config: StarGANv2Config) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim
        widths = [config.latent_dim] + [hidden] * 4
        self.shared = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        head = [hidden] * 4 + [config.style_dim]
        self.heads = nn.ModuleList(
            nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(head))
            for _ in range(config.num_domains)
        )

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        h = z
        for layer in self.shared:
            h = F.relu(layer(h))
        outs = []
        for head in self.heads:
            s = h
            for idx, layer in enumerate(head):
                s = layer(s) if idx == len(head) - 1 else F.relu(layer(s))
            outs.append(s)
        return _select(torch.stack(outs, dim=1), labels)

    def official_key(self, key: str) -> str:
        """The official parameter name of our ``key`` (the ReLUs take the odd indices)."""
        if match := re.fullmatch(r"shared\.(\d+)\.(\w+)", key):
            return f"shared.{2 * int(match[1])}.{match[2]}"
        match = re.fullmatch(r"heads\.(\d+)\.(\d+)\.(\w+)", key)
        if match is None:
            raise KeyError(key)
        return f"unshared.{match[1]}.{2 * int(match[2])}.{match[3]}"


class _DownTrunk(nn.Module):
    """Shared body of the style encoder and D: 3x3 conv, ``log2(img_size) - 2`` downsampling
    residual blocks (to 4²), LeakyReLU, 4x4 valid conv (to 1²), LeakyReLU."""

    def __init__(self, config: StarGANv2Config) -> None:
        super().__init__()
        dim = config.first_dim
        self.stem = nn.Conv2d(3, dim, 3, 1, 1)
        blocks = []
        for _ in range(_log2(config.img_size, 32) - 2):
            dim_out = min(dim * 2, config.max_conv_dim)
            blocks.append(ResBlock(dim, dim_out, downsample=True))
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.final_conv = nn.Conv2d(dim, dim, 4, 1, 0)
        self.out_dim = dim

    def trunk(self, images: Tensor) -> Tensor:
        h = self.stem(images)
        for block in self.blocks:
            h = block(h)
        h = self.final_conv(F.leaky_relu(h, LRELU_SLOPE))
        return F.leaky_relu(h, LRELU_SLOPE)

    def _official_trunk_key(self, key: str, prefix: str) -> str:
        depth = len(self.blocks)
        key = key.replace(".skip.", ".conv1x1.")
        if key.startswith("stem."):
            return prefix + "0." + key.removeprefix("stem.")
        if match := re.fullmatch(r"blocks\.(\d+)\.(.+)", key):
            return f"{prefix}{int(match[1]) + 1}.{match[2]}"
        if key.startswith("final_conv."):
            return f"{prefix}{depth + 2}." + key.removeprefix("final_conv.")
        raise KeyError(key)


class StyleEncoder(_DownTrunk):
    """(reference image, domain) -> style code: the trunk, then the domain's linear head."""

    def __init__(self, config: StarGANv2Config) -> None:
        super().__init__(config)
        self.config = config
        self.heads = nn.ModuleList(
            nn.Linear(self.out_dim, config.style_dim) for _ in range(config.num_domains)
        )

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        h = self.trunk(images).flatten(1)
        return _select(torch.stack([head(h) for head in self.heads], dim=1), labels)

    def official_key(self, key: str) -> str:
        """The official parameter name of our ``key`` (``shared.*``, ``unshared.*``)."""
        if key.startswith("heads."):
            return "unshared." + key.removeprefix("heads.")
        return self._official_trunk_key(key, "shared.")


class Discriminator(_DownTrunk):
    """(image, domain) -> one logit [N]: the trunk, a 1x1 conv to one logit per domain, and
    the logit of the given domain."""

    def __init__(self, config: StarGANv2Config) -> None:
        super().__init__(config)
        self.config = config
        self.classifier = nn.Conv2d(self.out_dim, config.num_domains, 1, 1, 0)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        return _select(self.classifier(self.trunk(images)).flatten(1), labels)

    def official_key(self, key: str) -> str:
        """The official parameter name of our ``key`` (``main.*``)."""
        if key.startswith("classifier."):
            return f"main.{len(self.blocks) + 4}." + key.removeprefix("classifier.")
        return self._official_trunk_key(key, "main.")


# ----------------------------------------------------------------------------------------------
# Construction, initialisation, official checkpoints.

StarGANv2Module = Generator | MappingNetwork | StyleEncoder | Discriminator


def he_init(module: nn.Module) -> None:
    """The official initialisation (core/utils.py ``he_init``, applied by
    core/solver.py:61-65): Kaiming-normal weights (fan_in, ReLU gain) and zero biases for every
    Conv2d and Linear; instance-norm affines keep PyTorch's (1, 0)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass
class StarGANv2Nets:
    """The four networks (official ``build_model``'s ``nets``)."""

    generator: Generator
    mapping_network: MappingNetwork
    style_encoder: StyleEncoder
    discriminator: Discriminator | None = None

    def items(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of each network present, in the official order."""
        names = ("generator", "mapping_network", "style_encoder", "discriminator")
        return [(name, getattr(self, name)) for name in names if getattr(self, name) is not None]


def build_nets(config: StarGANv2Config, discriminator: bool = True) -> StarGANv2Nets:
    """The networks in the official construction order (core/model.py:283-287), with PyTorch's
    default initialisation; the official trainer then applies :func:`he_init`."""
    return StarGANv2Nets(
        Generator(config),
        MappingNetwork(config),
        StyleEncoder(config),
        Discriminator(config) if discriminator else None,
    )


def official_key_map(module: StarGANv2Module) -> dict[str, str]:
    """Our state_dict key -> the official key, for every tensor of ``module``."""
    return {key: module.official_key(key) for key in module.state_dict()}


def to_official_state_dict(module: StarGANv2Module) -> dict[str, Tensor]:
    """``module``'s state_dict under the official names (as official ``CheckpointIO`` saves
    one network: no ``module.`` prefix)."""
    state = module.state_dict()
    return {official: state[ours] for ours, official in official_key_map(module).items()}


def load_official_state_dict(module: StarGANv2Module, state: Mapping[str, Tensor]) -> None:
    """Load a state_dict with the official names (a ``DataParallel`` ``module.`` prefix is
    dropped); every tensor must be present, with nothing left over."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    ours_of = {official: ours for ours, official in official_key_map(module).items()}
    missing = sorted(set(ours_of) - set(state))
    unexpected = sorted(set(state) - set(ours_of))
    if missing or unexpected:
        raise KeyError(
            f"not an official {type(module).__name__} state_dict of this configuration: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    module.load_state_dict({ours_of[key]: value for key, value in state.items()}, strict=True)


def load_official_checkpoint(nets: StarGANv2Nets, checkpoint: Mapping[str, Mapping]) -> None:
    """Load an official checkpoint file's dict (``{:06d}_nets.ckpt`` or ``_nets_ema.ckpt``:
    one state_dict per network name, core/checkpoint.py) into the networks it names."""
    for name, module in nets.items():
        if name in checkpoint:
            load_official_state_dict(module, checkpoint[name])
